"""The common operator mistakes and outages as one line that says what is wrong and the fix.

`explain(exc)` returns that line, or None for an error Squak does not recognise (the CLI then
prints its type and message and points to `--debug` for the traceback).
"""

from __future__ import annotations

import re
from pathlib import Path

_DUCKDB_LOCK = re.compile(r'Could not set lock on file "(?P<path>[^"]+)"')
_PID = re.compile(r"\(PID (?P<pid>\d+)\)")


def _process(pid: str) -> str:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return f"process {pid}"
    cmd = " ".join(cmd.split())
    return f"process {pid} ({cmd[:120]})" if cmd else f"process {pid}"


def explain(exc: BaseException) -> str | None:
    """One line (problem, then fix) for a failure an operator can fix, else None."""
    from squak_pipelines.clock import ClockError
    from squak_pipelines.cycles import CycleError
    from squak_pipelines.limits import LimitsError
    from squak_pipelines.migrations import MigrationError
    from squak_pipelines.paths import UnsafePathError
    from squak_pipelines.rating.plans import PlanFileError
    from squak_pipelines.reference.files import ReferenceFileError

    text = str(exc)
    name = type(exc).__name__
    if isinstance(
        exc,
        ReferenceFileError
        | PlanFileError
        | LimitsError
        | MigrationError
        | CycleError
        | ClockError
        | UnsafePathError,
    ):
        return text
    if "Could not set lock on file" in text:
        match = _DUCKDB_LOCK.search(text)
        path = match.group("path") if match else "the warehouse file"
        pid = _PID.search(text)
        holder = _process(pid.group("pid")) if pid else "another process"
        return (
            f"the warehouse {path} is in use by {holder}: wait for it to finish or stop it "
            "(a run in the Dagster UI holds the file while it runs), then retry"
        )
    if name in ("OperationalError", "InterfaceError") and (
        "connect" in text or "closed" in text or "terminat" in text
    ):
        first = text.strip().splitlines()[0] if text.strip() else name
        if "closed" in text or "terminat" in text:
            return (
                f"PostgreSQL closed the connection ({first}); what was committed stays: run the "
                "command again once the server is back"
            )
        return (
            f"PostgreSQL is unreachable ({first}): start it (pg_ctlcluster <version> main start) "
            "or fix SQUAK_WAREHOUSE_URL"
        )
    if isinstance(exc, FileNotFoundError) and exc.filename:
        return (
            f"{exc.filename} does not exist: run `squak generate` (demo data) or put the operator's "
            "reference files and drops in the data directory first (`squak doctor` checks it)"
        )
    return None
