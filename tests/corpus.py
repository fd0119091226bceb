"""The real-file corpus in `../shared/corpus/` (never copied into the repo): where it is, and
a skip that fails under CI=true."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

CORPUS = Path(os.environ.get("SQUAK_CORPUS_DIR", Path(__file__).resolve().parents[2] / "shared" / "corpus"))


def corpus_dir(kind: str) -> Path:
    """The corpus folder of one kind of file; skips (fails under CI=true) when it is absent."""
    folder = CORPUS / kind
    if not folder.is_dir():
        message = (
            f"the real-file corpus is not here ({folder}): put ../shared/corpus next to the "
            f"checkout or set SQUAK_CORPUS_DIR"
        )
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return folder


def expectations(kind: str) -> list[tuple[Path, dict]]:
    """(data file, its expected.json) for every file of a corpus folder that has one."""
    folder = corpus_dir(kind)
    out = []
    for spec in sorted(folder.glob("*.expected.json")):
        expected = json.loads(spec.read_text())
        out.append((folder / expected["file"], expected))
    return out


def expectation_ids(kind: str) -> list[str]:
    """Test ids (file names) without failing at collection when the corpus is absent."""
    folder = CORPUS / kind
    names = [p.name.removesuffix(".expected.json") for p in sorted(folder.glob("*.expected.json"))]
    return names or ["absent"]


class SwitchDrop:
    """A data directory with the demo's reference data and one switch, for real-format files."""

    SWITCH_ID = "corpus"

    def __init__(self, root: Path, demo_settings, switch: dict[str, str]):
        import csv
        import shutil

        from squak_pipelines.config import Settings
        from squak_pipelines.warehouse import DuckDBWarehouse

        self.settings = Settings.from_env({"SQUAK_DATA_DIR": str(root / "squak")})
        shutil.copytree(demo_settings.reference_dir, self.settings.reference_dir)
        with (self.settings.reference_dir / "switches.csv").open("w", newline="") as fh:
            writer = csv.DictWriter(fh, ["switch_id", "format", "timezone", "country", "folder"])
            writer.writeheader()
            writer.writerow(
                {
                    "switch_id": self.SWITCH_ID,
                    "folder": self.SWITCH_ID,
                    "format": switch["format"],
                    "timezone": switch["timezone"],
                    "country": switch["country"],
                }
            )
        if "dialing_rules_added" in switch:
            rules = self.settings.reference_dir / "dialing_rules.csv"
            rules.write_text(rules.read_text().rstrip("\n") + "\n" + switch["dialing_rules_added"] + "\n")
        self.folder = self.settings.cdr_drop_dir / self.SWITCH_ID
        self.folder.mkdir(parents=True)
        self.warehouse = DuckDBWarehouse(root / "w.duckdb")

    def put(self, name: str, data: bytes, day=None) -> Path:
        """A file in the switch's folder (modified on `day` at noon when given)."""
        import time

        target = self.folder / name
        target.write_bytes(data)
        if day is not None:
            stamp = time.mktime(day.timetuple()) + 12 * 3600
            os.utime(target, (stamp, stamp))
        return target

    def run(self, days=None):
        from squak_pipelines.mediation.stage import mediate

        return mediate(self.warehouse, self.settings, days)

    def outcomes(self) -> dict[tuple[str, int], dict]:
        """(file, line) -> what mediation did with it and the row it wrote."""
        out: dict[tuple[str, int], dict] = {}
        for table, what in (
            ("mediation.events", "accepted"),
            ("mediation.quarantine", "accepted"),
            ("mediation.b_legs", "b_leg"),
            ("mediation.duplicates", "duplicate"),
            ("mediation.rejects", "rejected"),
        ):
            for row in self.warehouse.query_df(f"select * from {table}").to_dict("records"):
                where = (row["source_file"].rsplit("/", 1)[-1], int(row["source_line"]))
                out[where] = {"outcome": what, **row}
        return out
