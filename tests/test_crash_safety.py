"""Crash safety: the billing chain killed (SIGKILL, at fault points, not after sleeps) in
every stage in turn, then run again, ends exactly where an uninterrupted run ends: the same
rows in every table, the same invoice numbers (no gaps) and document bytes, every e-mail
written once, every payment once."""

from __future__ import annotations

import csv
import email
import email.policy
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from squak_pipelines.config import Settings
from squak_pipelines.demo.generate import GenerateOptions, generate
from squak_pipelines.warehouse import DuckDBWarehouse, PostgresWarehouse
from tests.conftest import TEST_TODAY as TODAY
from tests.stage_helpers import snapshot

# Where the chain dies, in order: each killed run redoes what the one before rolled back.
FAULTS = ("orders.before_commit", "mediation.before_commit@2", "rating.before_commit@3",
          "invoicing.before_commit", "delivery.after_send@2", "payments.before_commit@2")
OPTIONS = GenerateOptions(customers=30, cdrs=3000, seed=5)


def _chain(env: dict[str, str], fault: str | None = None) -> subprocess.CompletedProcess[str]:
    run_env = {**env, "SQUAK_FAULT": fault} if fault else env
    return subprocess.run([sys.executable, "-m", "tests.crash_chain"], env=run_env, capture_output=True,
                          text=True, timeout=600, cwd=Path(__file__).parent.parent)


SCRIPT = "<script>alert(1)</script>"
FORMULA = '=HYPERLINK("http://evil","x")'


def _hostile_customers(data_dir: Path) -> None:
    """Script in every customer's name and a formula as their street (the same in both runs)."""
    accounts = data_dir / "drop" / "orders" / "accounts-base.csv"
    rows = list(csv.DictReader(accounts.open(encoding="utf-8")))
    for row in rows:
        row["name"], row["street"] = f"{SCRIPT} {row['name']}", FORMULA
    with accounts.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _data_dir(root: Path) -> tuple[Path, dict[str, str]]:
    data_dir = root / "squak"
    generate(Settings.from_env({"SQUAK_DATA_DIR": str(data_dir)}), OPTIONS)
    _hostile_customers(data_dir)
    rules = data_dir / "reference" / "fraud_rules.yaml"
    rules.write_text(rules.read_text().replace("max_quarantine_share: 0.05", "max_quarantine_share: 0.9"))
    # The same payment-link key in both installations, so their e-mails can be compared byte for byte.
    env = {**os.environ, "SQUAK_DATA_DIR": str(data_dir), "SQUAK_INVOICE_PDF": "off",
           "SQUAK_PAYMENT_LINK_SECRET": "crash-test-key"}
    for name in ("SQUAK_FAULT", "SQUAK_WAREHOUSE_URL"):
        env.pop(name, None)
    return data_dir, env


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """What one uninterrupted run of the chain leaves (embedded DuckDB)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SQUAK_TODAY", TODAY)  # module scope: before the per-test clock fixture
        data_dir, env = _data_dir(tmp_path_factory.mktemp("uninterrupted"))
    done = _chain(env)
    assert done.returncode == 0, done.stderr[-3000:]
    tables = snapshot(DuckDBWarehouse(Settings.from_env(env).duckdb_path), data_dir)
    assert tables["outbox"] and tables["invoicing.invoices"], "the chain bills and e-mails"
    return tables


def test_markup_and_formulas_in_customer_fields_stay_inert(uninterrupted: dict[str, object]) -> None:
    """Script in customer names: escaped in invoices, the portal and the e-mails' HTML; formulas
    in addresses: inert in the print house's manifest."""
    files = {**uninterrupted["invoices"], **uninterrupted["portal"]}  # type: ignore[dict-item]
    pages = [data.decode() for name, data in files.items() if name.endswith(".html")]
    assert pages and all(SCRIPT not in page for page in pages)
    assert any("&lt;script&gt;" in page for page in pages), "the name is shown, escaped"
    for data in uninterrupted["outbox"].values():  # type: ignore[union-attr]
        message = email.message_from_bytes(data, policy=email.policy.default)
        assert SCRIPT not in message.get_body(preferencelist=("html",)).get_content()
    manifests = [d for n, d in uninterrupted["print"].items() if n.endswith("manifest.csv")]  # type: ignore[union-attr]
    streets = [r["street"] for m in manifests for r in csv.DictReader(io.StringIO(m.decode()))]
    assert streets and all(s == "'" + FORMULA for s in streets)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["duckdb", "postgres"])
def test_killed_in_every_stage_the_rerun_gives_the_uninterrupted_figures(
        backend: str, uninterrupted: dict[str, object], tmp_path: Path,
        request: pytest.FixtureRequest) -> None:
    data_dir, env = _data_dir(tmp_path)
    if backend == "postgres":
        env["SQUAK_WAREHOUSE_URL"] = request.getfixturevalue("fresh_pg_url")
    for fault in FAULTS:
        crashed = _chain(env, fault)
        assert crashed.returncode == -9, f"{fault}: {crashed.stderr[-3000:]}"
    done = _chain(env)
    assert done.returncode == 0, done.stderr[-3000:]
    settings = Settings.from_env(env)
    warehouse = DuckDBWarehouse(settings.duckdb_path) if backend == "duckdb" else \
        PostgresWarehouse(env["SQUAK_WAREHOUSE_URL"])
    numbers = sorted(warehouse.query_arrow("select number from invoicing.invoices").column(0).to_pylist())
    assert [int(n[-6:]) for n in numbers] == list(range(1, len(numbers) + 1)), "no gaps in the numbers"
    killed = snapshot(warehouse, data_dir)
    for name, expected in uninterrupted.items():
        assert killed[name] == expected, f"{name} differs after the crashes and the re-run"
