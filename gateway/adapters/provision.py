"""Broker provisioning through ``rabbitmqctl`` (local broker, run as root or rabbitmq).

Used by the demo and the tests to create one vhost per centre, the node's own user,
and one least-privilege user per peer that may only write to our inbox exchange.
Everything is applied in one ``rabbitmqctl import_definitions`` call: idempotent, and
the passwords travel as salted hashes in a short-lived file, never on a command line.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field

from gateway.errors import ConfigError

TIMEOUT = 120
#: The broker refuses a message larger than this (the protocol's 512 KiB, plus room for
#: AMQP properties and headers), so a peer cannot make it hold bigger ones.
MAX_MESSAGE_BYTES = 640 * 1024
#: Connections and channels one peer's user may hold on our broker (a node uses one
#: connection and one channel per peer; the rest is room for reconnects and a tool).
PEER_CONNECTIONS, PEER_CHANNELS = 4, 8
#: The same for a node's own user (its inbox consumer and local publisher).
OWN_CONNECTIONS, OWN_CHANNELS = 16, 64


def rabbitmqctl(*args: str, node: str | None = None) -> str:
    """Run rabbitmqctl (against ``node``, e.g. ``c2@localhost``, else the local default
    node); raise :class:`ConfigError` with its message on failure."""
    exe = shutil.which("rabbitmqctl")
    if exe is None:
        raise ConfigError("rabbitmqctl not found: install rabbitmq-server (deploy/setup.sh)")
    target = ["-n", node] if node else []
    try:
        done = subprocess.run([exe, "-q", *target, *args], capture_output=True,  # noqa: S603
                              text=True,
                              timeout=TIMEOUT, check=False)
    except subprocess.TimeoutExpired as exc:
        raise ConfigError(f"rabbitmqctl {args[0]} timed out") from exc
    if done.returncode != 0:
        raise ConfigError(f"rabbitmqctl {args[0]} failed: {done.stderr.strip()[:300]}")
    return done.stdout


def password_hash(password: str, salt: bytes | None = None) -> str:
    """RabbitMQ's ``rabbit_password_hashing_sha256`` form: base64(salt + sha256(salt+pw))."""
    salt = salt if salt is not None else os.urandom(4)
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


@dataclass
class Definitions:
    """Vhosts, users and permissions to apply in one go."""

    vhosts: list[str] = field(default_factory=list)
    users: dict[str, str | None] = field(default_factory=dict)
    permissions: list[tuple[str, str, str, str, str]] = field(default_factory=list)
    limits: dict[str, tuple[int, int]] = field(default_factory=dict)

    def vhost(self, name: str) -> None:
        """Ensure a vhost."""
        if name not in self.vhosts:
            self.vhosts.append(name)

    def user(self, name: str, password: str | None) -> None:
        """Ensure a user with this password (no tags: no management or admin rights);
        ``None``: no password at all (the user logs in with a client certificate)."""
        self.users[name] = password

    def grant(self, vhost: str, user: str, configure: str, write: str, read: str) -> None:
        """Set a user's permissions on a vhost (regular expressions)."""
        self.permissions.append((vhost, user, configure, write, read))

    def limit(self, user: str, connections: int, channels: int) -> None:
        """Cap the connections and channels ``user`` may open at once."""
        self.limits[user] = (connections, channels)

    def document(self) -> dict[str, object]:
        """The definitions JSON document."""
        return {
            "vhosts": [{"name": v} for v in self.vhosts],
            "users": [{"name": u, "password_hash": "" if p is None else password_hash(p),
                       "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": []}
                      for u, p in self.users.items()],
            "permissions": [{"vhost": v, "user": u, "configure": c, "write": w, "read": r}
                            for v, u, c, w, r in self.permissions],
        }

    def apply(self, node: str | None = None) -> None:
        """Import into the local broker (or the RabbitMQ node ``node``)."""
        fd, path = tempfile.mkstemp(prefix="crisisgw-defs-", suffix=".json")
        try:
            with os.fdopen(fd, "w") as fh:
                json.dump(self.document(), fh)
            os.chmod(path, 0o644)  # the broker runs as its own user and must read it
            rabbitmqctl("import_definitions", path, node=node)
        finally:
            os.unlink(path)
        self._apply_limits(node)

    def _apply_limits(self, node: str | None) -> None:
        """User limits and the broker's message size cap, in one ``rabbitmqctl eval``."""
        if not self.limits:
            return
        users = _erlang_binaries(list(self.limits))
        caps = ",".join(f"#{{<<\"max-connections\">> => {c}, <<\"max-channels\">> => {h}}}"
                        for c, h in self.limits.values())
        rabbitmqctl("eval", f"application:set_env(rabbit, max_message_size, {MAX_MESSAGE_BYTES}),"
                    f" lists:foreach(fun({{U, L}}) -> ok = rabbit_auth_backend_internal:"
                    f"set_user_limits(U, L, <<\"crisisgw\">>) end, lists:zip({users}, [{caps}])).",
                    node=node)


def _erlang_binaries(names: list[str]) -> str:
    for name in names:
        if not all(c.isalnum() or c in "-_.@" for c in name):
            raise ConfigError(f"refusing to pass {name!r} to rabbitmqctl eval")
    return "[" + ",".join(f'<<"{n}">>' for n in names) + "]"


def delete_many(vhosts: list[str], users: list[str]) -> None:
    """Remove many vhosts and users in one ``rabbitmqctl eval`` (benchmarks create
    hundreds); names are restricted to safe characters."""
    if users:
        rabbitmqctl("eval", "lists:foreach(fun(U) -> catch rabbit_auth_backend_internal:"
                    f"delete_user(U, <<\"crisisgw\">>) end, {_erlang_binaries(users)}).")
    if vhosts:
        rabbitmqctl("eval", "lists:foreach(fun(V) -> catch rabbit_vhost:delete(V, "
                    f"<<\"crisisgw\">>) end, {_erlang_binaries(vhosts)}).")


def delete(vhosts: list[str], users: list[str]) -> None:
    """Remove vhosts and users (used by test clean-up); missing ones are ignored."""
    exe = shutil.which("rabbitmqctl")
    if exe is None:
        return
    procs = [subprocess.Popen([exe, "-q", "delete_vhost", v],  # noqa: S603
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for v in vhosts]
    procs += [subprocess.Popen([exe, "-q", "delete_user", u],  # noqa: S603
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
              for u in users]
    for p in procs:
        p.wait(timeout=TIMEOUT)
