"""`python -m tests.archive.kill_at STEP N ARGS...`: examctl ARGS, SIGKILLed at the Nth time the
archive protocol reaches STEP, as an OOM kill or a node failure would end it.

STEP is a name the archive job passes to `_reached` (planned, stored, verified, deleted,
discarded, manifest, manifest_written), or `writing`: halfway through writing the Nth object.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

from examctl.cli import main
from examctl.jobs import archive as archive_job


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _arm(step: str, nth: int) -> None:
    seen = 0

    def reached(name: str) -> None:
        nonlocal seen
        if name == step:
            seen += 1
            if seen == nth:
                _die()

    export = archive_job.export_object

    def export_then_die(engine: Any, planned: Any, out: Any) -> Any:
        nonlocal seen
        seen += 1
        if seen == nth:
            out.write(b"\x1f\x8b\x08 the first bytes of an object")
            out.flush()
            _die()
        return export(engine, planned, out)

    if step == "writing":
        archive_job.export_object = export_then_die  # type: ignore[assignment]
    else:
        archive_job._reached = reached


if __name__ == "__main__":
    _arm(sys.argv[1], int(sys.argv[2]))
    sys.argv = ["examctl", *sys.argv[3:]]
    main()
