"""Switch layout files: CDR layouts an operator configures on the switch (Asterisk
`cdr_custom.conf` mappings, FreeSWITCH `mod_cdr_csv` custom templates), described once in
`reference/layouts/<name>.yaml` and named in the `layout` column of `reference/switches.csv`.

A layout file:

    fields: [clid, calling_number, called_number, start_time, answer_time, end_time,
             duration, billsec, disposition, account_code, record_id]
    quoting: csv            # csv: "..." with "" escapes; none: values as written (FreeSWITCH
                            #   expands ${vars} without escaping)
    delimiter: ","
    header: false           # the first line names the fields
    time_format: "%Y-%m-%d %H:%M:%S"   # strptime, or `epoch` (seconds, a fraction allowed)
    timezone: ""            # zone of zone-less times; empty: the switch's
    disposition: asterisk   # asterisk (ANSWERED, NO ANSWER, BUSY, FAILED) or freeswitch
                            #   (a hangup cause, NORMAL_CLEARING...)

`fields` lists every field of a record in order. Squak reads the names in `ROLES`; any other
name is a field Squak keeps (it is part of the record's identity when there is no
`record_id`) but does not interpret. `record_id` is the switch's id of one record
(Asterisk `${CDR(uniqueid)}-${CDR(sequence)}`, FreeSWITCH `${uuid}`); `b_leg_id` is the
FreeSWITCH `${bleg_uuid}` that makes the other leg a B-leg.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from squak_pipelines.yaml_files import read_mapping

ROLES = ("record_id", "b_leg_id", "service", "calling_number", "called_number", "start_time",
         "answer_time", "end_time", "duration", "billsec", "disposition", "account_code")
REQUIRED = ("calling_number", "called_number", "start_time", "end_time", "duration", "billsec")
QUOTING = ("csv", "none")
DISPOSITIONS = ("asterisk", "freeswitch")


class LayoutError(ValueError):
    """A layout file that cannot be used; names the file and the key."""

    def __init__(self, path: Path, key: str, problem: str):
        super().__init__(f"{path}: {key}: {problem}")


@dataclass(frozen=True)
class Layout:
    name: str
    fields: tuple[str, ...]
    quoting: str = "csv"
    delimiter: str = ","
    header: bool = False
    time_format: str = "%Y-%m-%d %H:%M:%S"
    timezone: str = ""
    disposition: str = "asterisk"

    @property
    def columns(self) -> tuple[str, ...]:
        """Field names made unique (a second `ignore` is `ignore_2`), as the reader needs."""
        seen: dict[str, int] = {}
        out = []
        for name in self.fields:
            seen[name] = seen.get(name, 0) + 1
            out.append(name if seen[name] == 1 else f"{name}_{seen[name]}")
        return tuple(out)


def layout_path(reference_dir: Path, name: str) -> Path:
    return reference_dir / "layouts" / f"{name}.yaml"


def load_layout(path: Path) -> Layout:
    """Read and check one layout file."""
    spec = read_mapping(path, lambda field, problem: LayoutError(path, field, problem),
                        "layout file missing (named in reference/switches.csv)")
    unknown = sorted(set(spec) - {"fields", "quoting", "delimiter", "header", "time_format", "timezone",
                                  "disposition"})
    if unknown:
        raise LayoutError(path, unknown[0], "unknown key")
    fields = spec.get("fields")
    if not isinstance(fields, list) or not all(isinstance(f, str) and f for f in fields):
        raise LayoutError(path, "fields", "must list the record's field names in order")
    for role in REQUIRED:
        if role not in fields:
            raise LayoutError(path, "fields", f"must include {role}")
    for role in ROLES:
        if fields.count(role) > 1:
            raise LayoutError(path, "fields", f"{role} appears twice")
    layout = Layout(name=path.stem, fields=tuple(fields), quoting=str(spec.get("quoting", "csv")),
                    delimiter=str(spec.get("delimiter", ",")), header=bool(spec.get("header", False)),
                    time_format=str(spec.get("time_format", "%Y-%m-%d %H:%M:%S")),
                    timezone=str(spec.get("timezone") or ""),
                    disposition=str(spec.get("disposition", "asterisk")))
    if layout.quoting not in QUOTING:
        raise LayoutError(path, "quoting", f"must be one of {QUOTING}")
    if len(layout.delimiter) != 1 or layout.delimiter in "\r\n\"":
        raise LayoutError(path, "delimiter", "must be one character (not a quote or line end)")
    if layout.disposition not in DISPOSITIONS:
        raise LayoutError(path, "disposition", f"must be one of {DISPOSITIONS}")
    if layout.time_format != "epoch" and "%" not in layout.time_format:
        raise LayoutError(path, "time_format", "must be a strptime format or `epoch`")
    if layout.timezone:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(layout.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise LayoutError(path, "timezone", f"unknown time zone {layout.timezone!r}") from None
    return layout
