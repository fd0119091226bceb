"""The warehouse: one interface over the embedded DuckDB file and PostgreSQL.

Every asset reads and writes through a `Warehouse`. SQL uses SQLAlchemy-style named
parameters (`:name`) on both backends. Bulk loads take Arrow tables (or DataFrames): into
DuckDB by registering the Arrow data, into PostgreSQL by `COPY ... FROM STDIN`, never
row-by-row INSERT. Connections are opened per operation and closed at once, because a
DuckDB file admits one writing process at a time (dbt runs in a subprocess).
"""

from __future__ import annotations

import io
import os
import re
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import sqlalchemy as sa

from squak_pipelines.config import Settings
from squak_pipelines.file_turn import file_turn
from squak_pipelines.schema import STAGE_SCHEMAS, sql_type

LoadMode = Literal["replace", "append"]
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")
_NAMED_PARAM = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")
COPY_BATCH_ROWS = 250_000
# A PostgreSQL load of at least this many rows refreshes the table's planner statistics
# (ANALYZE samples a fixed 30,000 rows, so it costs the same on any size): the models that
# read it next are planned on its real size, not on what autovacuum last saw.
ANALYZE_FROM_ROWS = 50_000
# The write-ahead log a DuckDB bulk session may grow to before a checkpoint (the month's events).
BULK_LOG_LIMIT = "16GB"


class UndeclaredTableError(RuntimeError):
    """A load into a stage schema's table that the migrations have not created."""


class KeyViolation(RuntimeError):
    """Rows loaded into a table repeat one of its unique keys (the load is rolled back)."""


def check_identifier(name: str) -> str:
    """Table names are interpolated into SQL, so only plain `schema.table` names pass."""
    if not _IDENT.match(name):
        raise ValueError(f"not a plain SQL identifier: {name!r}")
    return name


def _schema_of(table: str) -> str | None:
    return table.split(".", 1)[0] if "." in table else None


def to_arrow(data: pa.Table | pd.DataFrame) -> pa.Table:
    if isinstance(data, pa.Table):
        return data
    return pa.Table.from_pandas(data, preserve_index=False)


class Warehouse(ABC):
    """What every asset needs from the warehouse, on either backend."""

    kind: str
    default_schema: str

    @property
    @abstractmethod
    def engine(self) -> sa.Engine:
        """A SQLAlchemy engine (for pandas, Great Expectations and ad-hoc tools)."""

    @abstractmethod
    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        """Run one statement with named parameters."""

    @abstractmethod
    def query_arrow(self, sql: str, params: Mapping[str, Any] | None = None) -> pa.Table:
        """Run a query and return an Arrow table."""

    @abstractmethod
    def load(self, table: str, data: pa.Table | pd.DataFrame, mode: LoadMode = "replace") -> int:
        """Bulk-load `data` into `table` (created from the data's schema); returns rows."""

    def table_exists(self, table: str) -> bool:
        """Whether a table or view exists (unqualified names are in the default schema)."""
        schema, name = _split(table, default_schema=self.default_schema)
        sql = ("select count(*) from information_schema.tables "
               "where table_schema = :schema and table_name = :name")
        return bool(self.scalar(sql, {"schema": schema, "name": name}))

    @abstractmethod
    def query_arrow_with(self, sql: str, name: str, data: pa.Table | pd.DataFrame,
                         params: Mapping[str, Any] | None = None) -> pa.Table:
        """Run `sql` in which `{name}` stands for the given data as a table (set-based joins
        of in-memory data with warehouse tables)."""

    def query_df(self, sql: str, params: Mapping[str, Any] | None = None) -> pd.DataFrame:
        return self.query_arrow(sql, params).to_pandas()

    def scalar(self, sql: str, params: Mapping[str, Any] | None = None) -> Any:
        table = self.query_arrow(sql, params)
        return table.column(0)[0].as_py() if table.num_rows else None

    def count(self, table: str) -> int:
        return int(self.scalar(f"select count(*) from {check_identifier(table)}"))

    @contextmanager
    def session(self) -> Iterator[Warehouse]:
        """Hold one connection for many operations (a no-op where connections are pooled)."""
        yield self

    @contextmanager
    def transaction(self) -> Iterator[Warehouse]:
        """Group writes into one commit where the backend allows it (DuckDB sessions)."""
        yield self

    @contextmanager
    def bulk_session(self) -> Iterator[Warehouse]:
        """A session for a stage that commits many large batches, a day at a time (DuckDB:
        see DuckDBWarehouse.bulk_session; elsewhere a plain session)."""
        with self.session():
            yield self

    @contextmanager
    def turn(self, waiting: Callable[[str], None] | None = None) -> Iterator[float]:
        """This process's turn at the warehouse for a whole unit of work (a Dagster step);
        yields the seconds waited. DuckDB: one process at a time on the file (file_turn);
        PostgreSQL takes concurrent writers, so no wait."""
        yield 0.0

    def serialize(self, name: str) -> None:
        """Inside a transaction: wait until no other transaction holds `name`, and hold it to
        the commit, so concurrent runs (day partitions in parallel) take turns at a section
        that reads what the other writes. PostgreSQL: a transaction-level advisory lock; the
        DuckDB file admits one writing process anyway."""
        return None



DUCKDB_MEMORY_MIB = 4096  # DuckDB's own default is 80% of the machine, which it fills with cache


def duckdb_config() -> dict[str, str]:
    """DuckDB's memory limit: SQUAK_DUCKDB_MEMORY (e.g. `8GB`), else 4 GiB or 80% of the machine
    if less. Beyond it DuckDB evicts cached pages and spills to disk; uncapped, a 10M-CDR
    month's mediation held 10 GiB of cached pages."""
    memory = os.environ.get("SQUAK_DUCKDB_MEMORY")
    if not memory:
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
        memory = f"{min(DUCKDB_MEMORY_MIB, physical * 8 // 10)}MiB"
    return {"memory_limit": memory}


class DuckDBWarehouse(Warehouse):
    """The embedded default: one DuckDB file."""

    kind = "duckdb"
    default_schema = "main"

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self._held: Any = None
        self._in_transaction = False
        self._bulk = False

    @cached_property
    def engine(self) -> sa.Engine:
        # NullPool: no pooled handle keeps the file locked between operations.
        return sa.create_engine(f"duckdb:///{self.path}", poolclass=sa.pool.NullPool)

    @contextmanager
    def connect(self) -> Iterator[Any]:
        if self._held is not None:
            yield self._held
            return
        import duckdb

        self.path.parent.mkdir(parents=True, exist_ok=True)
        con = duckdb.connect(str(self.path), config=duckdb_config())
        try:
            yield con
        finally:
            con.close()

    @contextmanager
    def turn(self, waiting: Callable[[str], None] | None = None) -> Iterator[float]:
        with file_turn(self.path, waiting) as waited:
            yield waited

    @contextmanager
    def session(self) -> Iterator[Warehouse]:
        """Keep the file open across operations (opening a DuckDB file costs ~10 ms); close
        it at the end so other processes (dbt) can write."""
        if self._held is not None:
            yield self
            return
        with self.connect() as con:
            self._held = con
            try:
                yield self
            finally:
                self._held = None

    @contextmanager
    def bulk_session(self) -> Iterator[Warehouse]:
        """A held session whose commits only append to the write-ahead log, checkpointed into
        the file once at the end. By default DuckDB checkpoints a commit that writes many
        rows, and each checkpoint re-compresses the partly filled row groups a day's batch
        leaves (commits were two thirds of mediation's time at 1M CDRs). Every commit is still
        durable (the log is synced); a crash replays the log when the file is next opened."""
        with self.session(), self.connect() as con:
            if self._bulk:
                yield self
                return
            self._bulk = True
            con.execute(f"set checkpoint_threshold = '{BULK_LOG_LIMIT}'")
            con.execute(f"set auto_checkpoint_skip_wal_threshold = {2**62}")
            try:
                yield self
            finally:
                self._bulk = False
                con.execute("reset checkpoint_threshold")
                con.execute("reset auto_checkpoint_skip_wal_threshold")
                if not self._in_transaction:
                    con.execute("checkpoint")

    @contextmanager
    def transaction(self) -> Iterator[Warehouse]:
        """One commit for all writes inside (all or nothing), on the held connection; a
        transaction inside another joins it."""
        if self._in_transaction:
            yield self
            return
        with self.session(), self.connect() as con:
            con.execute("begin transaction")
            self._in_transaction = True
            try:
                yield self
            except BaseException:
                self._in_transaction = False
                con.execute("rollback")
                raise
            self._in_transaction = False
            con.execute("commit")

    @staticmethod
    def _native(sql: str) -> str:
        return _NAMED_PARAM.sub(r"$\1", sql)

    @staticmethod
    def _used(sql: str, params: Mapping[str, Any] | None) -> dict[str, Any]:
        """The parameters the statement names (DuckDB refuses unused ones; PostgreSQL ignores them)."""
        names = set(_NAMED_PARAM.findall(sql))
        return {k: v for k, v in (params or {}).items() if k in names}

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        with self.connect() as con:
            con.execute(self._native(sql), self._used(sql, params))

    def query_arrow(self, sql: str, params: Mapping[str, Any] | None = None) -> pa.Table:
        with self.connect() as con:
            result = con.execute(self._native(sql), self._used(sql, params))
            return _fetch_arrow(result)

    def query_arrow_with(self, sql: str, name: str, data: pa.Table | pd.DataFrame,
                         params: Mapping[str, Any] | None = None) -> pa.Table:
        alias = f"_squak_{check_identifier(name)}"
        with self.connect() as con:
            con.register(alias, to_arrow(data))
            result = con.execute(self._native(sql.replace("{" + name + "}", alias)), self._used(sql, params))
            return _fetch_arrow(result)

    def load(self, table: str, data: pa.Table | pd.DataFrame, mode: LoadMode = "replace") -> int:
        """Insert by column name into the table; `replace` deletes its rows first, in the same
        transaction (the table itself, and the dbt views over it, stay)."""
        table = check_identifier(table)
        arrow = to_arrow(data)
        exists = self.table_exists(table) or _create_declared(self, table)
        with self.transaction(), self.connect() as con:
            if not exists and (schema := _schema_of(table)):
                con.execute(f"create schema if not exists {schema}")
            con.register("_squak_load", arrow)
            try:
                if not exists:
                    con.execute(f"create table {table} as select * from _squak_load limit 0")
                elif mode == "replace":
                    con.execute(f"delete from {table}")
                con.execute(f"insert into {table} by name select * from _squak_load")
                _check_keys(con, table)
            finally:
                con.unregister("_squak_load")
        return arrow.num_rows


def _check_keys(con: Any, table: str) -> None:
    """The keys DuckDB does not index (`Table.rewritten`), checked on the rows just loaded,
    inside the writing transaction: a repeat raises and the whole transaction rolls back."""
    from squak_pipelines.schema import registry

    spec = registry().get(table)
    if spec is None or not spec.rewritten:
        return
    for key in spec.unique:
        cols = ", ".join(key)
        dup = con.execute(
            f"select {cols}, count(*) from {table} join (select distinct {cols} from _squak_load) "
            f"using ({cols}) group by all having count(*) > 1 limit 1").fetchone()
        if dup:
            raise KeyViolation(f"{table}: duplicate key ({cols}) = {dup[:-1]!r}")


def _create_declared(warehouse: Warehouse, table: str) -> bool:
    """Stage schemas hold declared tables only: the migrations create them (run here when a
    load finds its table missing), a load never does. True when the table now exists."""
    if _schema_of(table) not in STAGE_SCHEMAS:
        return False
    from squak_pipelines.migrations import migrate

    migrate(warehouse)
    if not warehouse.table_exists(table):
        raise UndeclaredTableError(f"{table} is not a declared table: declare it in its stage's tables.py "
                                   "with a migration")
    return True


def _fetch_arrow(result: Any) -> pa.Table:
    """DuckDB's Arrow fetch (name differs between DuckDB releases)."""
    fetch = getattr(result, "fetch_arrow_table", None) or result.arrow
    table = fetch()
    return table if isinstance(table, pa.Table) else table.read_all()


def _split(table: str, default_schema: str) -> tuple[str, str]:
    check_identifier(table)
    return tuple(table.split(".", 1)) if "." in table else (default_schema, table)  # type: ignore[return-value]


def pg_type(arrow_type: pa.DataType) -> str:
    """PostgreSQL column type for an Arrow type; money stays NUMERIC, never float."""
    return sql_type(arrow_type, "postgres")


def _has_nul(column: pa.ChunkedArray) -> bool:
    return bool(pc.any(pc.fill_null(pc.match_substring(column, "\x00"), False)).as_py())


def _copy_ready(arrow: pa.Table) -> pa.Table:
    """Cast what PostgreSQL's CSV input can't read as written (ns timestamps, null columns)."""
    columns = []
    for field, column in zip(arrow.schema, arrow.columns, strict=True):
        if pa.types.is_timestamp(field.type) and field.type.unit == "ns":
            column = column.cast(pa.timestamp("us", tz=field.type.tz))
        elif pa.types.is_null(field.type):
            column = column.cast(pa.string())
        elif pa.types.is_string(field.type) and _has_nul(column):
            column = pc.replace_substring(column, "\x00", "\ufffd")  # PostgreSQL text holds no NUL
        columns.append(column)
    return pa.Table.from_arrays(columns, names=arrow.column_names)


# Arrow types for empty results, by PostgreSQL type OID (non-empty results keep Python's
# own values: Decimal for numeric, so money never passes through a float).
_PG_EMPTY_TYPES: dict[int, pa.DataType] = {
    16: pa.bool_(), 20: pa.int64(), 21: pa.int16(), 23: pa.int32(), 700: pa.float32(),
    701: pa.float64(), 1700: pa.decimal128(38, 6), 1082: pa.date32(),
    1114: pa.timestamp("us"), 1184: pa.timestamp("us", tz="UTC"),
}


class PostgresWarehouse(Warehouse):
    """Production: PostgreSQL, loaded with COPY."""

    kind = "postgres"
    default_schema = "public"

    def __init__(self, url: str):
        self.url = url.replace("postgresql://", "postgresql+psycopg2://", 1)
        self._held: sa.Connection | None = None

    @cached_property
    def engine(self) -> sa.Engine:
        return sa.create_engine(self.url, pool_pre_ping=True)

    @contextmanager
    def transaction(self) -> Iterator[Warehouse]:
        """Every operation inside runs on one connection in one transaction (all or nothing)."""
        if self._held is not None:
            yield self
            return
        with self.engine.begin() as con:
            self._held = con
            try:
                yield self
            finally:
                self._held = None

    @contextmanager
    def _connection(self) -> Iterator[sa.Connection]:
        if self._held is not None:
            yield self._held
            return
        with self.engine.begin() as con:
            yield con

    def serialize(self, name: str) -> None:
        self.execute("select pg_advisory_xact_lock(hashtext(:name))", {"name": f"squak:{name}"})

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        with self._connection() as con:
            con.execute(sa.text(sql), dict(params or {}))

    def query_arrow(self, sql: str, params: Mapping[str, Any] | None = None) -> pa.Table:
        with self._connection() as con:
            result = con.execute(sa.text(sql), dict(params or {}))
            type_codes = [col[1] for col in result.cursor.description]
            names = list(result.keys())
            rows = result.fetchall()
        return _rows_to_arrow(names, rows, type_codes)

    def query_arrow_with(self, sql: str, name: str, data: pa.Table | pd.DataFrame,
                         params: Mapping[str, Any] | None = None) -> pa.Table:
        """The data goes into a temporary table by COPY, then one query joins it."""
        alias = f"_squak_{check_identifier(name)}_{uuid.uuid4().hex[:8]}"
        arrow = _copy_ready(to_arrow(data))
        columns = ", ".join(f'"{n}" {pg_type(t)}' for n, t in
                            zip(arrow.column_names, arrow.schema.types, strict=True))
        with self._connection() as con:
            raw = con.connection.driver_connection
            with raw.cursor() as cur:
                cur.execute(f"create temporary table {alias} ({columns}) on commit drop")
                _copy_into(cur, alias, arrow)
                cur.execute(f"analyze {alias}")
            result = con.execute(sa.text(sql.replace("{" + name + "}", alias)), dict(params or {}))
            type_codes = [col[1] for col in result.cursor.description]
            names = list(result.keys())
            rows = result.fetchall()
        return _rows_to_arrow(names, rows, type_codes)

    def load(self, table: str, data: pa.Table | pd.DataFrame, mode: LoadMode = "replace") -> int:
        """COPY into the table by column name; `replace` deletes its rows first in the same
        transaction (never `drop ... cascade`: the dbt views over it stay)."""
        table = check_identifier(table)
        arrow = _copy_ready(to_arrow(data))
        exists = self.table_exists(table) or _create_declared(self, table)
        columns = ", ".join(f'"{name}" {pg_type(t)}' for name, t in
                            zip(arrow.column_names, arrow.schema.types, strict=True))
        with self._connection() as con, con.connection.driver_connection.cursor() as cur:
            if not exists:
                if schema := _schema_of(table):
                    cur.execute(f"create schema if not exists {schema}")
                cur.execute(f"create table if not exists {table} ({columns})")
            elif mode == "replace":
                cur.execute(f"delete from {table}")
            _copy_into(cur, table, arrow)
            if arrow.num_rows >= ANALYZE_FROM_ROWS:
                cur.execute(f"analyze {table}")
        return arrow.num_rows


def _copy_into(cursor: Any, table: str, arrow: pa.Table) -> None:
    """COPY an Arrow table into an existing PostgreSQL table, in CSV batches."""
    names = ", ".join(f'"{name}"' for name in arrow.column_names)
    for batch in arrow.to_batches(max_chunksize=COPY_BATCH_ROWS):
        buffer = io.BytesIO()
        pacsv.write_csv(pa.Table.from_batches([batch]), buffer,
                        pacsv.WriteOptions(include_header=False, quoting_style="needed"))
        buffer.seek(0)
        cursor.copy_expert(f"copy {table} ({names}) from stdin with (format csv)", buffer)


def _rows_to_arrow(names: list[str], rows: list[Any], type_codes: list[int]) -> pa.Table:
    """Arrow from DB-API rows: Python values keep Decimal for numeric (never float)."""
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in names]
    arrays = [pa.array(values, type=None if values else _PG_EMPTY_TYPES.get(code, pa.string()))
              for values, code in zip(columns, type_codes, strict=True)]
    return pa.Table.from_arrays(arrays, names=names)


def open_warehouse(settings: Settings | None = None) -> Warehouse:
    """The warehouse the environment chose (DuckDB file by default)."""
    settings = settings or Settings.from_env()
    if settings.warehouse_kind == "duckdb":
        return DuckDBWarehouse(settings.duckdb_path)
    return PostgresWarehouse(settings.warehouse_url)


@contextmanager
def throwaway_postgres(admin_url: str, prefix: str) -> Iterator[str]:
    """A new database `<prefix>_<random>` on the server of `admin_url`, for a test or a
    benchmark; its URL, and it is dropped (its sessions ended) afterwards. Raises what
    connecting raises when the server is unreachable."""
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    try:
        with admin.connect() as con:
            con.execute(sa.text(f'create database "{name}"'))
    except Exception:
        admin.dispose()
        raise
    try:
        yield admin.url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as con:
            con.execute(sa.text("select pg_terminate_backend(pid) from pg_stat_activity "
                                "where datname = :n and pid <> pg_backend_pid()"), {"n": name})
            con.execute(sa.text(f'drop database if exists "{name}"'))
        admin.dispose()
