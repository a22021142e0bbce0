"""Group commit, the part both engines share: writes queued by many coroutines run in
batches on one writer thread, one transaction and one commit per batch, and each caller
hears its own result once its batch has committed (:mod:`gateway.adapters.sqlite.db`,
:mod:`gateway.adapters.postgres.db`)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from gateway import failpoints
from gateway.errors import LedgerError
from gateway.service.changes import ChangeSignal

T = TypeVar("T")
MAX_BATCH = 512
Pending = tuple[Callable[[Any], Any], "asyncio.Future[Any]"]


class GroupCommit:
    """The writer's queue and commit loop; an engine's database runs the batch
    (:meth:`_run_batch`) and says which of its driver's errors fail a whole batch."""

    #: The driver's errors that fail a whole batch (translated by :meth:`_translate`).
    batch_errors: tuple[type[Exception], ...] = ()

    def __init__(self) -> None:
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="ledger-writer")
        self._pending: list[Pending] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        #: Set by :meth:`_run_batch`: whether the batch changed any row.
        self._batch_changed = False
        self.batches = 0
        self.writes = 0
        self.reads = 0
        #: Bumped after every committed batch that changed something: what live views
        #: wait on.
        self.changes = ChangeSignal()

    def _translate(self, exc: Exception) -> LedgerError:
        return LedgerError(f"ledger: {exc}")

    def _run_batch(self, batch: list[Pending]) -> list[tuple[bool, Any]]:
        """Run ``batch`` in one transaction on the writer thread: (ok, value or error)
        per write."""
        raise NotImplementedError

    def _start_commits(self) -> None:
        self._task = asyncio.create_task(self._commit_loop(), name="ledger-commit-loop")

    async def write(self, fn: Callable[[Any], T]) -> T:
        """Run ``fn`` in the next batch; return its result once the batch has committed."""
        if self._closing:
            raise LedgerError("ledger is closing")
        fut: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._pending.append((fn, fut))
        self._wake.set()
        return await fut

    async def _commit_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            failing: tuple[type[Exception], ...] = (*self.batch_errors, LedgerError)
            while self._pending:
                batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
                try:
                    results = await loop.run_in_executor(self._writer, self._run_batch, batch)
                except Exception as exc:  # noqa: BLE001 - every caller hears it; none waits forever
                    err = (exc if isinstance(exc, LedgerError)
                           else self._translate(exc) if isinstance(exc, failing)
                           else LedgerError(f"ledger: {type(exc).__name__}: {exc}"))
                    for _, fut in batch:
                        if not fut.done():
                            fut.set_exception(err)
                    continue
                failpoints.hit("db.after_commit")  # durable, but no caller has heard so
                self.batches += 1
                self.writes += len(batch)
                if self._batch_changed:  # not for a claim or sweep that found nothing
                    self.changes.bump()
                for (_, fut), (ok, value) in zip(batch, results, strict=True):
                    if fut.done():
                        continue
                    if ok:
                        fut.set_result(value)
                    else:
                        fut.set_exception(value)
            if self._closing:
                return

    async def _drain(self) -> bool:
        """Stop taking writes and commit what is queued; False if already closing."""
        if self._closing:
            return False
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
        return True
