"""Broker provisioning through ``rabbitmqctl`` (local broker, run as root or rabbitmq).

Used by the demo to create one vhost per centre, the node's own user, and one
least-privilege user per peer that may only write to our inbox exchange.
"""

from __future__ import annotations

import shutil
import subprocess

from gateway.errors import ConfigError

TIMEOUT = 60


def _ctl(*args: str) -> str:
    exe = shutil.which("rabbitmqctl")
    if exe is None:
        raise ConfigError("rabbitmqctl not found: install rabbitmq-server (deploy/setup.sh)")
    try:
        done = subprocess.run([exe, "-q", *args], capture_output=True, text=True,  # noqa: S603
                              timeout=TIMEOUT, check=False)
    except subprocess.TimeoutExpired as exc:
        raise ConfigError(f"rabbitmqctl {args[0]} timed out") from exc
    if done.returncode != 0:
        raise ConfigError(f"rabbitmqctl {args[0]} failed: {done.stderr.strip()[:300]}")
    return done.stdout


def _names(listing: str) -> set[str]:
    return {line.split("\t")[0] for line in listing.splitlines() if line.strip()}


class RabbitCtl:
    """Idempotent vhost, user and permission management."""

    def __init__(self) -> None:
        self._users = _names(_ctl("list_users", "--no-table-headers"))
        self._vhosts = _names(_ctl("list_vhosts", "--no-table-headers"))

    def vhost(self, name: str) -> None:
        """Create the vhost if missing (quorum queues by default)."""
        if name not in self._vhosts:
            _ctl("add_vhost", name, "--default-queue-type", "quorum")
            self._vhosts.add(name)

    def user(self, name: str, password: str) -> None:
        """Create the user, or reset its password to ``password``."""
        if name in self._users:
            _ctl("change_password", name, password)
        else:
            _ctl("add_user", name, password)
            self._users.add(name)

    def permissions(self, vhost: str, user: str, configure: str, write: str, read: str) -> None:
        """Set the user's permissions on the vhost (regular expressions)."""
        _ctl("set_permissions", "-p", vhost, user, configure, write, read)

    def delete_user(self, name: str) -> None:
        """Remove a user if present."""
        if name in self._users:
            _ctl("delete_user", name)
            self._users.discard(name)
