"""Fault injection for the crash tests: named points in the stages where a test can make the
process die (SIGKILL, as the OOM killer or a power cut would) or raise.

`SQUAK_FAULT=<point>` kills the process the first time it passes `<point>`;
`SQUAK_FAULT=<point>@<n>` the n-th time; `SQUAK_FAULT=<point>=raise` raises `InjectedFault`
instead; `=pause` writes `<point>.paused` in `SQUAK_FAULT_DIR` and waits (at most two
minutes) for `<point>.resume` there, so a test can break the database under a running stage.
Unset (always, outside tests), `fault_point` is one dictionary look-up.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

_passed: dict[str, int] = {}


class InjectedFault(RuntimeError):
    """Raised at a fault point when the test asked for `=raise`."""


def fault_point(name: str) -> None:
    """Die here if the environment asks for a fault at `name`."""
    spec = os.environ.get("SQUAK_FAULT")
    if not spec:
        return
    target, _, action = spec.partition("=")
    point, _, nth = target.partition("@")
    if point != name:
        return
    _passed[name] = _passed.get(name, 0) + 1
    if _passed[name] != int(nth or 1):
        return
    if action == "raise":
        raise InjectedFault(f"injected fault at {name}")
    if action == "pause":
        folder = Path(os.environ.get("SQUAK_FAULT_DIR", "."))
        (folder / f"{name}.paused").touch()
        for _ in range(1200):
            if (folder / f"{name}.resume").exists():
                return
            time.sleep(0.1)
        raise InjectedFault(f"{name}: not resumed")
    os.kill(os.getpid(), signal.SIGKILL)
