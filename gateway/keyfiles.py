"""Key files: our private signing key (PEM, PKCS#8, mode 0600), the public keys we used
before, and the archive of replaced private keys."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)

from gateway.errors import ConfigError, KeyMaterialError
from gateway.protocol.keys import SigningKey, public_key_from_text, public_key_text


def write_private_key(path: Path, key: Ed25519PrivateKey) -> None:
    """Write ``key`` as PKCS#8 PEM, readable by the owner only; never overwrites."""
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
        fh.flush()
        os.fsync(fh.fileno())  # on disk before anything names it (a rotation's ledger row)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def load_signing_key(path: Path, kid: str) -> SigningKey:
    """Load our Ed25519 signing key; raises :class:`ConfigError` naming the file."""
    try:
        key = load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(f"{path}: cannot load signing key: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{path}: not an Ed25519 private key")
    return SigningKey(kid=kid, private=key)


PUBLIC_DIR = "public-keys"
ARCHIVE_DIR = "retired-keys"


def keep_public_key(key_dir: Path, kid: str, key: Ed25519PublicKey) -> Path:
    """Record one of our public keys in ``key_dir/public-keys/<kid>.pub`` (base64url):
    evidence and checkpoints signed with it stay verifiable after the private key is
    gone."""
    folder = key_dir / PUBLIC_DIR
    folder.mkdir(mode=0o755, exist_ok=True)
    path = folder / f"{kid}.pub"
    path.write_text(public_key_text(key) + "\n", encoding="ascii")
    return path


def retire_private_key(path: Path, kid: str, action: str) -> str:
    """Take a replaced signing key out of the node's reach: ``archive`` moves it to
    ``retired-keys/<kid>.key`` next to it (a folder the node never reads, 0700),
    ``delete`` removes it. Returns what was done, for the operator."""
    if action == "delete":
        path.unlink(missing_ok=True)
        return f"deleted {path}"
    folder = path.parent / ARCHIVE_DIR
    folder.mkdir(mode=0o700, exist_ok=True)
    target = folder / f"{kid}.key"
    os.replace(path, target)
    return f"archived to {target} (the node no longer reads it)"


def own_public_keys(key_file: Path, kid: str) -> dict[str, Ed25519PublicKey]:
    """The public key of ``key_file`` (if it is still there) and of every key kept in
    ``public-keys/`` or as a ``signing-<kid>.key`` file beside it: our current key and
    the earlier ones."""
    keys = {kid: load_signing_key(key_file, kid).public()} if key_file.exists() else {}
    folder = key_file.parent
    for path in sorted((folder / PUBLIC_DIR).glob("*.pub")):
        old = path.name.removesuffix(".pub")
        if old not in keys:
            try:
                keys[old] = public_key_from_text(path.read_text(encoding="ascii").strip())
            except (OSError, UnicodeDecodeError, KeyMaterialError):
                continue
    for path in sorted(folder.glob("signing-*.key")):
        old = path.name.removeprefix("signing-").removesuffix(".key")
        if old not in keys:
            try:
                keys[old] = load_signing_key(path, old).public()
            except ConfigError:
                continue
    return keys
