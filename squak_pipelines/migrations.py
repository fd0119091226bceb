"""Numbered migrations: how a warehouse gets, and keeps, the declared tables (`schema.py`).

`migrate()` applies the migrations a warehouse has not had yet, in order, each in the same
transaction as its row in `schema_migrations` (version, name, applied_at), so a warehouse is
never half-migrated. On PostgreSQL an advisory lock serializes concurrent migrators; DuckDB
admits one writing process anyway. Every stage calls `migrate()` before it writes (cheap when
up to date: one query). A warehouse made by release 0.1 (tables created from the first load,
no keys, no `schema_migrations`) is upgraded in place: its tables and data stay, missing
columns and the unique keys are added. A migration is never edited once released; a change
to a declaration comes with a new migration at the end of `MIGRATIONS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from squak_pipelines import clock
from squak_pipelines.schema import Table, canonical_type, registry, sql_type
from squak_pipelines.warehouse import Warehouse

MIGRATIONS_TABLE = "schema_migrations"
_PG_LOCK = 0x5C0A4B  # pg_advisory_xact_lock key of Squak's migrations


class MigrationError(RuntimeError):
    """A migration cannot be applied (names the table, the problem and the fix)."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    apply: Callable[[Warehouse], None]


def _live_columns(warehouse: Warehouse, t: Table) -> dict[str, str]:
    rows = warehouse.query_arrow(
        "select column_name, data_type, numeric_precision, numeric_scale from information_schema.columns "
        "where table_schema = :s and table_name = :t",
        {"s": t.schema_name, "t": t.table_name},
    ).to_pylist()
    return {r["column_name"]: canonical_type(r["data_type"], r["numeric_precision"], r["numeric_scale"])
            for r in rows}


def _create_declared_tables(warehouse: Warehouse) -> None:
    """Every declared table, created where missing; missing columns added where it exists."""
    for t in registry().values():
        warehouse.execute(f"create schema if not exists {t.schema_name}")
        live = _live_columns(warehouse, t)
        if not live:
            columns = ", ".join(f'"{f.name}" {sql_type(f.type, warehouse.kind)}' for f in t.columns)
            warehouse.execute(f"create table {t.name} ({columns})")
            continue
        for f in t.columns:
            if f.name not in live:
                column_type = sql_type(f.type, warehouse.kind)
                warehouse.execute(f'alter table {t.name} add column "{f.name}" {column_type}')


def _unique_keys(warehouse: Warehouse) -> None:
    """The keys billing depends on, enforced by unique indexes (after proving the data has no
    duplicates: a duplicate stops the migration with the key and an example)."""
    for t in registry().values():
        for key in t.indexed(warehouse.kind):
            cols = ", ".join(key)
            dup = warehouse.query_arrow(
                f"select {cols}, count(*) as n from {t.name} group by {cols} having count(*) > 1 limit 1"
            ).to_pylist()
            if dup:
                example = {c: dup[0][c] for c in key}
                raise MigrationError(
                    f"{t.name}: {dup[0]['n']} rows share the key ({cols}) = {example}; remove the "
                    f"duplicates, then run `squak migrate` again"
                )
            warehouse.execute(f"create unique index if not exists {t.index_name(key)} on {t.name} ({cols})")


def _views(warehouse: Warehouse) -> None:
    warehouse.execute("create or replace view orders.validated_order_lines as "
                      "select * from orders.order_lines where status = 'accepted'")
    if warehouse.kind == "postgres":  # the point-in-time number lookup is a range scan
        warehouse.execute("create index if not exists services_number_from "
                          "on orders.services (number, active_from)")


def _keys_indexed_once(warehouse: Warehouse) -> None:
    """On DuckDB, drop the unique indexes of keys another table's index already holds
    (`Table.registered_in`): mediation's events, quarantine and B-legs, whose keys are all in
    `mediation.event_keys`. Each index was an in-memory ART maintained on every append."""
    if warehouse.kind != "duckdb":
        return
    for t in registry().values():
        if t.registered_in:
            for key in t.unique:
                warehouse.execute(f"drop index if exists {t.schema_name}.{t.index_name(key)}")


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "declared tables and columns", _create_declared_tables),
    Migration(2, "unique keys", _unique_keys),
    Migration(3, "views and lookup indexes", _views),
    Migration(4, "record identity and layouts: events.b_leg_id, mediation.b_legs and its key, "
                 "files.b_legs, raw.switches.layout",
              lambda wh: (_create_declared_tables(wh), _unique_keys(wh))),
    Migration(5, "payments by source identity: payments' bank and return columns, files' outcome "
                 "counts and checks, payments.duplicates, payments.direct_debits, accounts' mandates",
              lambda wh: (_create_declared_tables(wh), _unique_keys(wh))),
    Migration(6, "invoices customers and auditors accept: services' parent_service_id (add-ons end "
                 "with their line), e-invoice columns of invoices and credit notes",
              lambda wh: (_create_declared_tables(wh), _unique_keys(wh))),
    Migration(7, "mediation's keys indexed once: events, quarantine and B-legs through "
                 "mediation.event_keys (DuckDB)",
              _keys_indexed_once),
    Migration(8, "invoice lines name the usage they sum: cycle, service, band, discount_name, late "
                 "(`squak explain`)",
              _create_declared_tables),
    Migration(9, "tariff what-if results: rating.what_if", _create_declared_tables),
)
LATEST = MIGRATIONS[-1].version


def applied(warehouse: Warehouse) -> list[int]:
    """Versions applied to this warehouse (empty for a new or a release-0.1 warehouse)."""
    if not warehouse.table_exists(MIGRATIONS_TABLE):
        return []
    return sorted(warehouse.query_arrow(f"select version from {MIGRATIONS_TABLE}").column(0).to_pylist())


def pending(warehouse: Warehouse) -> list[Migration]:
    done = set(applied(warehouse))
    return [m for m in MIGRATIONS if m.version not in done]


def migrate(warehouse: Warehouse) -> list[str]:
    """Apply the pending migrations; returns their `version name` labels."""
    if not pending(warehouse):
        return []
    done_labels = []
    with warehouse.transaction():
        if warehouse.kind == "postgres":
            warehouse.execute("select pg_advisory_xact_lock(:k)", {"k": _PG_LOCK})
        warehouse.execute(f"create table if not exists {MIGRATIONS_TABLE} "
                          "(version integer primary key, name varchar(200), applied_at timestamptz)")
        for m in pending(warehouse):  # again, under the lock
            m.apply(warehouse)
            warehouse.execute(f"insert into {MIGRATIONS_TABLE} values (:v, :n, :at)",
                              {"v": m.version, "n": m.name, "at": clock.now()})
            done_labels.append(f"{m.version:04d} {m.name}")
    return done_labels


def _live_indexes(warehouse: Warehouse) -> set[str]:
    if warehouse.kind == "postgres":
        sql = "select indexname from pg_indexes"
    else:
        sql = "select index_name from duckdb_indexes()"
    return set(warehouse.query_arrow(sql).column(0).to_pylist())


def drift(warehouse: Warehouse) -> list[str]:
    """How the live warehouse differs from the declarations (empty when it matches)."""
    problems = []
    indexes = _live_indexes(warehouse)
    for t in registry().values():
        live = _live_columns(warehouse, t)
        if not live:
            problems.append(f"{t.name}: missing")
            continue
        for f in t.columns:
            want = canonical_type(sql_type(f.type, warehouse.kind))
            if f.name not in live:
                problems.append(f"{t.name}.{f.name}: missing column")
            elif live[f.name] != want:
                problems.append(f"{t.name}.{f.name}: {live[f.name]}, declared {want}")
        extra = sorted(set(live) - set(t.columns.names))
        if extra:
            problems.append(f"{t.name}: undeclared columns {extra}")
        problems += [f"{t.name}: unique key ({', '.join(k)}) not enforced"
                     for k in t.indexed(warehouse.kind) if t.index_name(k) not in indexes]
    return problems
