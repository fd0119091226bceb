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
        message = (f"the real-file corpus is not here ({folder}): put ../shared/corpus next to the "
                   f"checkout or set SQUAK_CORPUS_DIR")
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
    return [p.name.removesuffix(".expected.json") for p in sorted(folder.glob("*.expected.json"))] or ["absent"]
