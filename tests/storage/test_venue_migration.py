"""Schema revision 0003 (venues) on a POPULATED database: rows written at 0002 survive the upgrade
as okex_v1 rows with status names, and the downgrade gives back exactly the 0002 rows."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import sqlalchemy as sa

from recorder.records import Record
from recorder.storage import migrate
from recorder.storage.schema import DATASETS, V1_STATUS_NAMES, dataset_for
from recorder.storage.sql import SqlStore
from tests.fixtures.storage import sample_records, v5_records

CODE_OF = {name: code for code, name in V1_STATUS_NAMES.items()}
STATUS_COLUMNS = ("status", "previous_status")


def v1_records() -> list[Record]:
    """One record of every 0002 dataset, some twice (other key), statuses of several codes."""
    records = sample_records()
    more: list[Record] = []
    for r in records:
        name = dataset_for(r).name
        if name == "orders":
            more.append(replace(r, order_id=r.order_id + 1, status=type(r.status)("filled")))
        elif name == "order_status_changes":
            more.append(replace(r, status=type(r.status)("open"), previous_status=type(r.status)("placing")))
        elif name == "deals":
            more.append(replace(r, tid=r.tid + 1, symbol="eth_btc"))
    return [*records, *more]


def old_columns(engine: sa.Engine, name: str) -> list[str]:
    with engine.connect() as conn:
        return [c["name"] for c in sa.inspect(conn).get_columns(name)]


def old_table(engine: sa.Engine, name: str) -> sa.TableClause:
    """The table as revision 0002 has it, with the schema's column types (status: small int)."""
    table = DATASETS[name].table
    columns = [sa.column(c, sa.SmallInteger() if c in STATUS_COLUMNS else table.c[c].type)
               for c in old_columns(engine, name)]
    return sa.table(name, *columns)


def old_row(record: Record, columns: list[str]) -> dict[str, Any]:
    row = dataset_for(record).to_row(record)
    out = {c: row[c] for c in columns if c != "id"}
    for c in STATUS_COLUMNS:
        if c in out and out[c] is not None:
            out[c] = CODE_OF[out[c]]
    return out


def read(engine: sa.Engine, table: sa.TableClause | sa.Table) -> list[tuple[tuple[str, Any], ...]]:
    """Every row as (column, value) pairs by column name (a migration may move a column)."""
    with engine.connect() as conn:
        rows = conn.execute(sa.select(*[c for c in table.c if c.name != "id"])).mappings().all()
    return sorted((tuple(sorted(r.items())) for r in rows), key=repr)


def test_0003_upgrades_a_populated_0002_database_and_downgrades_back(db_url: str) -> None:
    migrate.upgrade(db_url, "0002")
    engine = sa.create_engine(db_url, poolclass=sa.pool.NullPool)
    try:
        records = v1_records()
        old: dict[str, sa.TableClause] = {}
        for name in DATASETS:
            if name in ("instruments", "fills"):
                continue
            old[name] = old_table(engine, name)
            rows = [old_row(r, old_columns(engine, name)) for r in records if dataset_for(r).name == name]
            with engine.begin() as conn:
                conn.execute(sa.insert(old[name]), rows)
        before = {name: read(engine, table) for name, table in old.items()}
        assert all(before.values()) and sum(map(len, before.values())) == len(records)

        migrate.upgrade(db_url, "0003")
        assert migrate.check(db_url) == []
        # every row is back as the record written, venue okex_v1, statuses as names
        with engine.connect() as conn:
            for name, ds in DATASETS.items():
                got = [ds.from_row(row) for row in conn.execute(sa.select(ds.table)).mappings()]
                want = [r for r in records if dataset_for(r).name == name]
                assert sorted(got, key=repr) == sorted(want, key=repr), name
            assert {r.status for r in conn.execute(sa.text("SELECT status FROM orders"))} == {
                "cancelled", "filled"}
            venues = conn.execute(sa.text("SELECT DISTINCT venue FROM deals")).scalars().all()
            assert venues == ["okex_v1"]
            assert conn.execute(sa.text("SELECT DISTINCT venue FROM feed_events")).scalars().all() == [""]
        # the second venue's rows share v1's keys but for the venue: stored beside them
        with SqlStore(db_url) as store:
            store.write_batch(v5_records())
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM deals WHERE venue = 'okx_v5'")).scalar() == 1
            assert conn.execute(sa.text("SELECT count(*) FROM fills")).scalar() == 1

        migrate.downgrade(db_url, "0002")
        assert migrate.current(db_url) == "0002"
        after = {name: read(engine, old_table(engine, name)) for name in old}
        assert after == before  # exactly the 0002 rows: other venues' rows are gone, codes are back
        with engine.connect() as conn:
            assert not {"instruments", "fills"} & set(sa.inspect(conn).get_table_names())
    finally:
        engine.dispose()
    migrate.upgrade(db_url)
    assert migrate.check(db_url) == []
