"""Settings from the environment: data directory, warehouse URL, drop folders.

Nothing set means the embedded default: everything lives under one data directory
(`.squak/` at the project root) with a DuckDB warehouse file and Dagster's local storage.
`SQUAK_WAREHOUSE_URL=postgresql://...` switches the warehouse to PostgreSQL and
`SQUAK_DAGSTER_PG_URL=postgresql://...` puts Dagster's run/event/schedule storage there.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# An installed wheel carries the dbt project and the GX suites as data files under
# <prefix>/share/squak-billing; a source checkout (editable install) uses its own folders.
BUNDLE_DIR = Path(sys.prefix) / "share" / "squak-billing"


def _bundled(name: str) -> Path:
    checkout = PROJECT_ROOT / name
    return checkout if checkout.is_dir() else BUNDLE_DIR / name


DBT_PROJECT_DIR = _bundled("dbt_project")
EXPECTATIONS_DIR = _bundled("expectations")


def _default_data_dir() -> Path:
    """`.squak/` beside pyproject.toml in a source checkout, else in the working directory."""
    if (PROJECT_ROOT / "pyproject.toml").exists():
        return PROJECT_ROOT / ".squak"
    return Path.cwd() / ".squak"


@dataclass(frozen=True)
class PostgresParams:
    """Connection parts of a postgresql:// URL (for dbt's profile and psql-style tools)."""

    host: str
    port: int
    user: str
    password: str
    dbname: str


@dataclass(frozen=True)
class Settings:
    """Where Squak reads and writes; built from the environment by `Settings.from_env()`."""

    data_dir: Path
    warehouse_url: str
    dagster_pg_url: str | None = None

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        data_dir = Path(env.get("SQUAK_DATA_DIR") or _default_data_dir()).resolve()
        url = env.get("SQUAK_WAREHOUSE_URL") or f"duckdb:///{data_dir / 'warehouse.duckdb'}"
        if not url.startswith(("duckdb:///", "postgresql://", "postgresql+psycopg2://")):
            raise ValueError(
                f"SQUAK_WAREHOUSE_URL must start with duckdb:/// or postgresql://, got {url!r}"
            )
        return cls(data_dir=data_dir, warehouse_url=url,
                   dagster_pg_url=env.get("SQUAK_DAGSTER_PG_URL") or None)

    # --- warehouse -------------------------------------------------------------
    @property
    def warehouse_kind(self) -> str:
        """`duckdb` (embedded default) or `postgres` (production)."""
        return "duckdb" if self.warehouse_url.startswith("duckdb:") else "postgres"

    @property
    def duckdb_path(self) -> Path:
        if self.warehouse_kind != "duckdb":
            raise ValueError("the warehouse is not DuckDB")
        return Path(self.warehouse_url.removeprefix("duckdb:///"))

    @property
    def postgres(self) -> PostgresParams:
        if self.warehouse_kind != "postgres":
            raise ValueError("the warehouse is not PostgreSQL")
        return parse_postgres_url(self.warehouse_url)

    # --- folders -----------------------------------------------------------------
    @property
    def reference_dir(self) -> Path:
        """Operator-maintained reference files: products, plans, rate decks, taxes, switches."""
        return self.data_dir / "reference"

    @property
    def drop_dir(self) -> Path:
        return self.data_dir / "drop"

    @property
    def cdr_drop_dir(self) -> Path:
        """One sub-folder per switch; the sensor and mediation read from here."""
        return self.drop_dir / "cdr"

    @property
    def orders_drop_dir(self) -> Path:
        return self.drop_dir / "orders"

    @property
    def payments_drop_dir(self) -> Path:
        """Card settlement reports, bank statements (camt.053) and manual payment files."""
        return self.drop_dir / "payments"

    @property
    def dagster_home(self) -> Path:
        return self.data_dir / "dagster"

    @property
    def dbt_target(self) -> str:
        return self.warehouse_kind

    def dbt_env(self) -> dict[str, str]:
        """Environment for dbt's profiles.yml, derived from the warehouse URL."""
        env = {"SQUAK_DBT_TARGET": self.dbt_target}
        if self.warehouse_kind == "duckdb":
            env["SQUAK_DUCKDB_PATH"] = str(self.duckdb_path)
        else:
            pg = self.postgres
            env.update(SQUAK_PG_HOST=pg.host, SQUAK_PG_PORT=str(pg.port), SQUAK_PG_USER=pg.user,
                       SQUAK_PG_PASSWORD=pg.password, SQUAK_PG_DBNAME=pg.dbname)
        return env


def parse_postgres_url(url: str) -> PostgresParams:
    """Split a postgresql:// URL into its parts (password may come from PGPASSWORD)."""
    parsed = urlparse(url)
    if not parsed.path.strip("/"):
        raise ValueError(f"PostgreSQL URL names no database: {url!r}")
    return PostgresParams(
        host=parsed.hostname or "127.0.0.1",
        port=parsed.port or 5432,
        user=unquote(parsed.username or os.environ.get("PGUSER", "postgres")),
        password=unquote(parsed.password or os.environ.get("PGPASSWORD", "")),
        dbname=parsed.path.strip("/"),
    )
