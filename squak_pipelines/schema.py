"""Table contracts: every warehouse table declared once, with columns, keys and a description.

Each stage declares its tables in its own `tables.py` (`orders/tables.py`, `mediation/tables.py`,
...) as `Table` values; `registry()` gathers them. The numbered migrations (`migrations.py`)
create and upgrade the live tables from these declarations, and `drift()` there compares a
live warehouse with them. Money is `DECIMAL(18,6)` / `NUMERIC(18,6)`, never a float.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from importlib import import_module

import pyarrow as pa

MONEY = pa.decimal128(18, 6)
TEXT = pa.string()
INT = pa.int64()
UTC_TS = pa.timestamp("us", tz="UTC")
DATE = pa.date32()
BOOL = pa.bool_()

# The stage modules whose `tables.py` declares tables, in creation order.
STAGE_TABLE_MODULES = (
    "squak_pipelines.reference.tables",
    "squak_pipelines.capture.tables",
    "squak_pipelines.orders.tables",
    "squak_pipelines.mediation.tables",
    "squak_pipelines.rating.tables",
    "squak_pipelines.invoicing.tables",
    "squak_pipelines.payments.tables",
    "squak_pipelines.assurance.tables",
)
# Schemas that hold only declared tables (anything loaded there must be declared).
STAGE_SCHEMAS = ("raw", "orders", "mediation", "rating", "invoicing", "payments", "assurance")


@dataclass(frozen=True)
class Table:
    """One warehouse table: `schema.name`, its Arrow columns and its unique keys.

    `rewritten` tables replace rows in place (delete, then insert the same keys, in one
    transaction). DuckDB's unique indexes refuse that once the index has been read back from
    the file (its "over-eager constraint checking"), so on DuckDB the keys of these tables are
    checked by `Warehouse.load` inside the writing transaction instead; PostgreSQL indexes all.

    `registered_in` names the table whose unique index already holds this table's keys, written
    in the same transaction as this table's rows (mediation's `event_keys` register holds the key
    of every accepted, quarantined and B-leg record). On DuckDB, where a unique index is an
    in-memory ART that every append maintains, such a key is not indexed twice; PostgreSQL
    indexes it anyway.
    """

    name: str
    description: str
    columns: pa.Schema
    unique: tuple[tuple[str, ...], ...] = ()
    rewritten: bool = False
    registered_in: str = ""

    def __post_init__(self) -> None:
        names = set(self.columns.names)
        for key in self.unique:
            missing = [c for c in key if c not in names]
            if missing:
                raise ValueError(f"{self.name}: unique key {key} names unknown columns {missing}")

    @property
    def schema_name(self) -> str:
        return self.name.split(".", 1)[0]

    @property
    def table_name(self) -> str:
        return self.name.split(".", 1)[1]

    def empty(self) -> pa.Table:
        return self.columns.empty_table()

    def index_name(self, key: tuple[str, ...]) -> str:
        """Deterministic name of a unique key's index (so a migration can find it)."""
        return f"uq_{self.schema_name}_{self.table_name}__{'_'.join(key)}"


    def indexed(self, kind: str) -> tuple[tuple[str, ...], ...]:
        """The keys a unique index enforces on this backend (the others `load` checks)."""
        return () if (self.rewritten or self.registered_in) and kind == "duckdb" else self.unique


def table(name: str, description: str, columns: Iterable[tuple[str, pa.DataType]] | pa.Schema,
          unique: Iterable[str | tuple[str, ...]] = (), rewritten: bool = False,
          registered_in: str = "") -> Table:
    """Declare a table; `unique` lists keys, each a column or a tuple of columns."""
    schema = columns if isinstance(columns, pa.Schema) else pa.schema(list(columns))
    keys = tuple((k,) if isinstance(k, str) else tuple(k) for k in unique)
    return Table(name, description, schema, keys, rewritten, registered_in)


def schemas(tables: Iterable[Table]) -> dict[str, pa.Schema]:
    """`{name: Arrow schema}` of declared tables (for code that builds rows)."""
    return {t.name: t.columns for t in tables}


@cache
def registry() -> dict[str, Table]:
    """Every declared table, by `schema.name`."""
    out: dict[str, Table] = {}
    for module in STAGE_TABLE_MODULES:
        for t in import_module(module).TABLES:
            if t.name in out:
                raise ValueError(f"table {t.name} is declared twice")
            out[t.name] = t
    return out


def sql_type(arrow_type: pa.DataType, kind: str) -> str:
    """The column type of an Arrow type on `duckdb` or `postgres`; money stays decimal."""
    pg = kind == "postgres"
    if pa.types.is_boolean(arrow_type):
        return "boolean"
    if pa.types.is_int8(arrow_type) or pa.types.is_int16(arrow_type):
        return "smallint"
    if pa.types.is_int32(arrow_type) or pa.types.is_uint8(arrow_type) or pa.types.is_uint16(arrow_type):
        return "integer"
    if pa.types.is_integer(arrow_type):
        return "bigint"
    if pa.types.is_floating(arrow_type):
        return "double precision" if pg else "double"
    if pa.types.is_decimal(arrow_type):
        return f"{'numeric' if pg else 'decimal'}({arrow_type.precision},{arrow_type.scale})"
    if pa.types.is_timestamp(arrow_type):
        return "timestamptz" if arrow_type.tz else "timestamp"
    if pa.types.is_date(arrow_type):
        return "date"
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type) or pa.types.is_null(arrow_type):
        return "text" if pg else "varchar"
    raise TypeError(f"no SQL mapping for Arrow type {arrow_type}")


def canonical_type(data_type: str, precision: int | None = None, scale: int | None = None) -> str:
    """One spelling for a column type as either backend's information_schema reports it."""
    t = data_type.lower()
    if t in ("varchar", "text", "character varying"):
        return "text"
    if t in ("timestamp with time zone", "timestamptz"):
        return "timestamptz"
    if t in ("timestamp without time zone", "timestamp"):
        return "timestamp"
    if t in ("double", "double precision", "float8"):
        return "double"
    if t.startswith(("decimal", "numeric")):
        if "(" in t:
            return "decimal" + t[t.index("("):].replace(" ", "")
        return f"decimal({precision},{scale})"
    return t
