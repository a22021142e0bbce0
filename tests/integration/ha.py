"""One centre's node as several instances over one PostgreSQL ledger, behind one API
address, as a centre would run it (README, High availability).

:class:`Balancer` stands in for the centre's load balancer: a TCP round robin over the
instances' API ports that skips an instance which refuses the connection (as HAProxy's
``redispatch`` does). :class:`HaCentre` gives each instance its own copy of the
centre's ``gateway.toml`` (its own API port, and optionally its own route to PostgreSQL
through a fault proxy), starts and kills them, and puts the balancer on the API port the
federation knows the centre by.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from gateway.config import load_settings, update_config
from tests.faults.proxy import ProxyThread
from tests.integration.harness import Federation, free_base_port

CHUNK = 64 * 1024


class Balancer:
    """Round robin over ``targets`` on 127.0.0.1:``port``, in a thread of its own."""

    def __init__(self, port: int, targets: list[int]) -> None:
        self.port, self.targets = port, targets
        self.picks: list[int] = []
        self._next = 0
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[object]] = set()
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), daemon=True,
                                        name=f"balancer-{port}")
        self._thread.start()
        ready.wait(10)

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._serve, "127.0.0.1", self.port, reuse_address=True))
        ready.set()
        self._loop.run_forever()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        self._writers.add(writer)
        try:
            await self._relay(reader, writer)
        finally:
            self._writers.discard(writer)
            if task is not None:
                self._handlers.discard(task)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream = None
        for _ in range(len(self.targets)):
            port = self.targets[self._next % len(self.targets)]
            self._next += 1
            try:
                upstream = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                continue  # that instance is down: the next one
            self.picks.append(port)
            break
        if upstream is None:
            writer.close()
            return
        up_reader, up_writer = upstream
        self._writers.add(up_writer)
        try:
            await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer))
        finally:
            self._writers.discard(up_writer)

    @staticmethod
    async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(CHUNK):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(ConnectionError, OSError):
                writer.close()

    def close(self) -> None:
        """Stop listening and end the thread."""
        async def stop() -> None:
            if self._server is not None:
                self._server.close()
            for writer in list(self._writers):
                writer.close()
            for task in list(self._handlers):
                task.cancel()
            await asyncio.gather(*self._handlers, return_exceptions=True)
            if self._server is not None:
                await self._server.wait_closed()
        if self._loop.is_closed():
            return
        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


@dataclass
class Instance:
    """One instance of the centre's node."""

    name: str
    config: Path
    port: int
    proc: subprocess.Popen[bytes] | None = None
    #: Its own route to PostgreSQL, when the test cuts it off.
    pg_proxy: ProxyThread | None = None

    @property
    def log(self) -> Path:
        """The instance's log file."""
        return self.config.with_suffix(".log")

    def alive(self) -> bool:
        """Whether its process runs."""
        return self.proc is not None and self.proc.poll() is None


@dataclass
class HaCentre:
    """``count`` instances of ``centre`` (whose ledger the federation put in PostgreSQL)
    behind a balancer on the centre's API port."""

    fed: Federation
    centre: str
    count: int = 2
    pg_proxies: bool = False
    instances: list[Instance] = field(default_factory=list)
    balancer: Balancer | None = None

    def __post_init__(self) -> None:
        node = self.fed.nodes[self.centre]
        url = load_settings(node.config).ledger.url
        assert url is not None, "put the centre on PostgreSQL (Federation.create on_postgres)"
        base = free_base_port(self.count)
        for i in range(self.count):
            name = f"{self.centre.lower()}-{i + 1}"
            config = node.config.with_name(f"{name}.toml")
            config.write_bytes(node.config.read_bytes())
            config.chmod(0o600)
            proxy = None
            ledger_url = url.get_secret_value()
            if self.pg_proxies:
                parts = urlsplit(ledger_url)
                proxy = ProxyThread(parts.port or 5432, parts.hostname or "127.0.0.1")
                ledger_url = urlunsplit(parts._replace(
                    netloc=parts.netloc.replace(f":{parts.port or 5432}", f":{proxy.port}")))
            update_config(config, _with(base + i, ledger_url))
            self.instances.append(Instance(name=name, config=config, port=base + i,
                                           pg_proxy=proxy))
        self.balancer = Balancer(node.port, [i.port for i in self.instances])

    def start(self, *which: int, env: dict[str, str] | None = None) -> None:
        """Start instances (all by default; by index)."""
        for index in which or range(self.count):
            inst = self.instances[index]
            if inst.alive():
                continue
            with inst.log.open("ab") as log:
                inst.proc = subprocess.Popen(
                    [sys.executable, "-m", "gateway", "run", "-c", str(inst.config),
                     "--instance", inst.name, "--log-format", "json", "--log-level", "debug"],
                    stdout=log, stderr=log,
                    env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})

    def stop(self, *which: int, kill: bool = False) -> None:
        """Stop instances (SIGTERM, or SIGKILL with ``kill``; all by default)."""
        for index in which or range(self.count):
            proc = self.instances[index].proc
            if proc is None or proc.poll() is not None:
                continue
            if kill:
                proc.kill()
            else:
                proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def holder(self) -> int | None:
        """The index of the instance whose log says it holds the jobs' lease last."""
        found = None
        for index, inst in enumerate(self.instances):
            if not inst.alive() or not inst.log.exists():
                continue
            events = [line for line in inst.log.read_text().splitlines()
                      if '"lease_acquired"' in line or '"lease_lost"' in line
                      or '"lease_released"' in line]
            if events and '"lease_acquired"' in events[-1]:
                found = index
        return found

    def close(self) -> None:
        """Stop every instance, the balancer and the proxies."""
        self.stop()
        if self.balancer is not None:
            self.balancer.close()
        for inst in self.instances:
            if inst.pg_proxy is not None:
                inst.pg_proxy.close()


def _with(port: int, ledger_url: str) -> Callable[[dict[str, Any]], None]:
    def change(raw: dict[str, Any]) -> None:
        raw["api"]["port"] = port
        raw["ledger"] = {**raw.get("ledger", {}), "url": ledger_url}
    return change

