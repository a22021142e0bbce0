"""Failpoints: named steps where a test can make the process die with SIGKILL.

The fault-injection suite (``tests/faults/``) sets ``CRISISGW_FAILPOINTS`` to a
comma-separated list of names before starting a node; :func:`arm` is called once at
start-up with that list (read by :mod:`gateway.config`, the only module that reads
the environment). :func:`hit` is a no-op for every name that is not armed, so the
calls cost one set lookup in production.

A name may carry a count, ``name@3``: the process dies on the third hit.

Known names (each placed where a crash is most instructive):

- ``submit.before_commit``   the API has validated and sealed, nothing is stored yet
- ``dispatch.after_publish`` the broker confirmed a publish; "sent" is not recorded
- ``db.in_commit``           the writer thread is inside a commit batch: hit after each
                             write of the batch, before COMMIT (counts writes)
- ``db.after_commit``        a batch is committed; no caller has been answered (counts
                             batches)
- ``archive.before_delete`` retention wrote and registered an archive file; none of
                             its rows is deleted yet (counts files)
- ``rotate.after_key_file``  a rotation wrote the new private key file; nothing names it
- ``rotate.after_commit``    the ledger made the new key current and queued its
                             announcement; the node still signs with the old key
"""

from __future__ import annotations

import os
import signal
from collections import Counter

_ARMED: dict[str, int] = {}
_HITS: Counter[str] = Counter()


def arm(spec: str) -> None:
    """Arm the failpoints named in ``spec`` (``"a,b@3"``); an empty spec disarms all."""
    _ARMED.clear()
    _HITS.clear()
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, _, count = part.partition("@")
        _ARMED[name] = int(count) if count else 1


def hit(name: str) -> None:
    """Die with SIGKILL here when ``name`` is armed and its count is reached."""
    if name not in _ARMED:
        return
    _HITS[name] += 1
    if _HITS[name] >= _ARMED[name]:
        os.kill(os.getpid(), signal.SIGKILL)
