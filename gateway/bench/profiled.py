"""``python -m gateway.bench.profiled OUT crisisgw-arguments...``: run the ``crisisgw``
command under cProfile timed by CPU time (``time.process_time``), not wall time, so that
a process descheduled on a busy machine is not charged for its waits; the statistics go
to ``OUT`` when the command ends (a node on SIGTERM). Used by ``crisisgw bench instances
--profile``.
"""

from __future__ import annotations

import cProfile
import sys
import time

from gateway.cli import main


def run(argv: list[str]) -> int:
    """Profile ``crisisgw argv[1:]``, write to ``argv[0]``; the command's exit code."""
    out, args = argv[0], argv[1:]
    profile = cProfile.Profile(time.process_time)
    profile.enable()
    try:
        return main(args)
    finally:
        profile.disable()
        profile.dump_stats(out)


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
