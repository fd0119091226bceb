import gzip
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest

from squak_pipelines.capture.drop_files import inspect_file, scan_drop_folder, to_table
from squak_pipelines.reference.files import (
    ReferenceFileError,
    load_products,
    load_switches,
    load_tax_rates,
)

TAX_HEADER = "tax_id,name,country,state,applies_to,kind,rate,amount,currency,effective_from\n"


def test_demo_reference_files_load(demo) -> None:
    settings, _ = demo
    taxes = load_tax_rates(settings.reference_dir / "tax_rates.csv")
    assert pa.types.is_decimal(taxes.schema.field("rate_percent").type)
    vat = next(r for r in taxes.to_pylist() if r["tax_id"] == "GB-VAT")
    assert vat["rate_percent"] == Decimal("20")
    assert load_products(settings.reference_dir / "products.csv").num_rows == 5
    assert load_switches(settings.reference_dir / "switches.csv").num_rows == 4


@pytest.mark.parametrize(("row", "line", "field"), [
    ("T1,VAT,GB,,all,percent,-1,,GBP,2026-01-01\n", 2, "rate"),
    ("T1,VAT,GB,,all,percent,abc,,GBP,2026-01-01\n", 2, "rate"),
    ("T1,VAT,GB,,all,percent,120,,GBP,2026-01-01\n", 2, "rate"),
    ("T1,VAT,GB,,lunch,percent,20,,GBP,2026-01-01\n", 2, "applies_to"),
    ("T1,VAT,GB,,all,percent,20,,XXX,2026-01-01\n", 2, "currency"),
    ("T1,E911,US,NY,per_number,fixed,,1.0.0,USD,2026-01-01\n", 2, "amount"),
    ("T1,VAT,GB,,all,percent,20,,GBP,2026-01-01\nT1,VAT,GB,,all,percent,20,,GBP,2026-01-01\n", 3, "tax_id"),
])
def test_bad_tax_rows_name_file_line_and_field(tmp_path: Path, row: str, line: int, field: str) -> None:
    path = tmp_path / "tax_rates.csv"
    path.write_text(TAX_HEADER + row)
    with pytest.raises(ReferenceFileError) as err:
        load_tax_rates(path)
    assert (err.value.path, err.value.line, err.value.field) == (path, line, field)
    assert f"{path}:{line}: field {field!r}" in str(err.value)


def test_missing_column_and_bad_switch(tmp_path: Path) -> None:
    path = tmp_path / "switches.csv"
    path.write_text("switch_id,format,timezone,country\nsw1,asterisk,UTC,US\n")
    with pytest.raises(ReferenceFileError, match="folder"):
        load_switches(path)
    path.write_text("switch_id,format,timezone,country,folder\nsw1,asterisk,Mars/Olympus,US,sw1\n")
    with pytest.raises(ReferenceFileError, match="time zone"):
        load_switches(path)


def test_drop_file_inventory_hashes_and_counts(tmp_path: Path) -> None:
    root = tmp_path / "cdr"
    (root / "ast").mkdir(parents=True)
    (root / "can").mkdir()
    (root / "ast" / "a.csv").write_bytes(b'"x","y"\r\n"z","w"')  # CRLF, no final newline
    (root / "ast" / "b.csv.gz").write_bytes(gzip.compress(b'"x","y"\n"z","w"\n"q","r"\n'))
    (root / "ast" / "copy.csv").write_bytes((root / "ast" / "a.csv").read_bytes())
    (root / "can" / "c.csv").write_bytes(b"event_id,source\n1,s\n")
    switches = pa.table({"switch_id": ["ast1", "can1"], "format": ["asterisk", "canonical"],
                         "folder": ["ast", "can"]})
    files = {f.relative_path: f for f in scan_drop_folder(root, switches)}
    assert files["ast/a.csv"].records == 2
    assert files["ast/b.csv.gz"].records == 3 and files["ast/b.csv.gz"].compressed
    assert files["can/c.csv"].records == 1, "canonical header is not a record"
    assert files["ast/copy.csv"].sha256 == files["ast/a.csv"].sha256
    assert to_table(list(files.values())).num_rows == 4
    single = inspect_file(root / "ast" / "a.csv", "ast1", "asterisk", root)
    assert single.bytes == len(b'"x","y"\r\n"z","w"')
