"""Project-level guarantees: the pure core stays pure, schemas do not drift, lint is clean."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.wire_schemas import render_all

ROOT = Path(__file__).resolve().parent.parent
# socket is left out: the standard library and pydantic import it without doing I/O.
IO_MODULES = ("asyncio", "aio_pika", "aiormq", "aiohttp", "sqlite3", "subprocess", "structlog",
              "gateway.adapters", "gateway.service", "gateway.web", "gateway.config")


def test_protocol_core_imports_no_io_module() -> None:
    """Importing gateway.protocol (all of it) loads no I/O, async or logging module."""
    code = (
        "import sys, pkgutil, importlib, gateway.protocol as p\n"
        "for m in pkgutil.iter_modules(p.__path__):\n"
        "    importlib.import_module(f'gateway.protocol.{m.name}')\n"
        f"io = {IO_MODULES!r}\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in io or m in io]\n"
        "print(','.join(sorted(bad)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=ROOT)
    assert out.stdout.strip() == ""


def test_schemas_match_the_models() -> None:
    """schemas/ holds exactly what the models generate (run `crisisgw schemas` after a change)."""
    expected = render_all()
    on_disk = {p.name: p.read_text(encoding="utf-8") for p in (ROOT / "schemas").glob("*.json")}
    assert sorted(on_disk) == sorted(expected)
    for name, text in expected.items():
        assert json.loads(on_disk[name]) == json.loads(text), f"{name} drifted"


@pytest.mark.skipif(shutil.which("ruff", path=str(Path(sys.executable).parent)) is None,
                    reason="ruff is installed with the dev extra")
def test_ruff_is_clean() -> None:
    """ruff reports nothing on gateway/ and tests/."""
    ruff = str(Path(sys.executable).parent / "ruff")
    out = subprocess.run([ruff, "check", "gateway", "tests"], capture_output=True, text=True,
                         cwd=ROOT, check=False)
    assert out.returncode == 0, out.stdout[-3000:]


@pytest.mark.skipif(shutil.which("mypy", path=str(Path(sys.executable).parent)) is None,
                    reason="mypy is installed with the dev extra")
def test_mypy_strict_is_clean() -> None:
    """mypy --strict (with the pydantic plugin) reports nothing on gateway/."""
    out = subprocess.run([sys.executable, "-m", "mypy"], capture_output=True, text=True,
                         cwd=ROOT, check=False)
    assert out.returncode == 0, out.stdout[-3000:]


def _locked() -> dict[str, tuple[str, int]]:
    """name -> (version, number of hashes) of deploy/requirements.lock."""
    import re  # noqa: PLC0415

    text = (ROOT / "deploy" / "requirements.lock").read_text(encoding="utf-8")
    out: dict[str, tuple[str, int]] = {}
    for block in re.split(r"\n(?=[A-Za-z0-9])", text):
        match = re.match(r"([A-Za-z0-9._-]+)==(\S+)", block)
        if match:
            name = re.sub(r"[-_.]+", "-", match.group(1)).lower()
            out[name] = (match.group(2), block.count("--hash=sha256:"))
    return out


def test_every_dependency_is_locked_with_hashes_at_an_allowed_version() -> None:
    """deploy/requirements.lock pins every dependency (and pip and setuptools) with hashes,
    at versions the minimums of pyproject.toml allow (those are past known CVEs)."""
    import tomllib  # noqa: PLC0415

    from packaging.requirements import Requirement  # noqa: PLC0415

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = [*project["dependencies"], *project["optional-dependencies"]["dev"],
              "pip>=25.3", "setuptools>=80"]
    locked = _locked()
    for text in wanted:
        req = Requirement(text)
        name = req.name.replace("_", "-").replace(".", "-").lower()
        assert name in locked, f"{req.name} is not in deploy/requirements.lock"
        version, hashes = locked[name]
        assert hashes >= 1, f"{req.name} has no hash"
        assert req.specifier.contains(version, prereleases=True), f"{req.name} {version}"
    assert all(h >= 1 for _, h in locked.values())


def test_vendored_web_assets_are_the_pinned_ones() -> None:
    """Every package of deploy/web-assets.json is vendored at its pinned version, with its
    licence, and each file still has the SHA-256 its VERSION recorded (no hand edit)."""
    spec = json.loads((ROOT / "deploy" / "web-assets.json").read_text(encoding="utf-8"))
    for pkg in spec["packages"]:
        into = ROOT / pkg["into"]
        lines = (into / "VERSION").read_text(encoding="utf-8").splitlines()
        assert lines[0].startswith(f"{pkg['name']} {pkg['version']} ")
        assert pkg["integrity"] in lines[0]
        recorded = dict(reversed(line.split("  ", 1)) for line in lines[1:])
        assert len(recorded) == len(pkg["files"])
        assert "LICENSE" in recorded
        for rel, digest in recorded.items():
            assert hashlib.sha256((into / rel).read_bytes()).hexdigest() == digest, rel


#: What every unit that runs the node must say (README, High availability).
_HARDENING = ("User=crisisgw", "NoNewPrivileges=yes", "ProtectSystem=strict",
              "ProtectHome=yes", "PrivateTmp=yes", "PrivateDevices=yes",
              "CapabilityBoundingSet=", "RestrictAddressFamilies=", "SystemCallFilter=",
              "UMask=0077")


def test_the_systemd_units_are_hardened_and_systemd_accepts_them(tmp_path: Path) -> None:
    """deploy/systemd: the node's instance unit is confined (its own user, a read-only
    system, no privilege); ``systemd-analyze verify`` finds nothing wrong with any unit
    once its programs exist."""
    units = sorted((ROOT / "deploy" / "systemd").iterdir())
    assert {u.name for u in units} >= {"crisisgw@.service", "crisisgw-broker-tls.service"}
    node = (ROOT / "deploy" / "systemd" / "crisisgw@.service").read_text()
    for line in _HARDENING:
        assert any(given.startswith(line) for given in node.splitlines()), line
    assert "--instance %i" in node
    verify = shutil.which("systemd-analyze")
    if verify is None:
        pytest.skip("systemd-analyze is not installed")
    fake = tmp_path / "bin"
    fake.mkdir()
    copies = []
    for unit in units:
        text = unit.read_text()
        for program in ("/opt/crisisgw/.venv/bin/crisisgw", "/opt/crisisgw/deploy/broker-tls.sh"):
            stand_in = fake / Path(program).name
            stand_in.write_text("#!/bin/sh\n")
            stand_in.chmod(0o755)
            text = text.replace(program, str(stand_in))
        name = unit.name.replace("@.", "@a.")
        (tmp_path / name).write_text(text)
        copies.append(str(tmp_path / name))
    done = subprocess.run([verify, "verify", *copies], capture_output=True, text=True,
                          timeout=60, check=False)
    problems = [line for line in (done.stdout + done.stderr).splitlines()
                if str(tmp_path) in line or "Unknown" in line or "Invalid" in line]
    assert problems == [], problems
