"""Book levels as JSON text (today) or as a nested type: write cost, size, and reading for users.

``python -m bench.nested_levels [tiny|small|full]``

The snapshots are the recorder's own :class:`~recorder.records.BookSnapshot` records: the
benchmark stream (:mod:`bench.streams`, 10 symbols, books 200 levels deep) through the collector's
pipeline with ``snapshot_depth`` 20 and then 200, keeping the snapshots of the incremental
``depth`` channel (20, resp. about 200 levels a side). For each depth, the two encodings of
``bids``/``asks``:

* **JSON** -- today's: ``levels_to_json`` (msgspec) per side into an Arrow ``string`` column,
  exactly the store's conversion (``schema._book_columns`` + ``Dataset.to_table``);
* **nested** -- ``list<struct<price: decimal128(38, 18), amount: decimal128(38, 18)>>``
  built from the same records: the levels' ``Decimal``s flattened into two exact
  ``decimal128`` arrays (pyarrow's C conversion, no float, no text) plus list offsets.

Measured, alternately and best of three, in the same run:

(a) CPU to build the two level columns from the records (and, for scale, the store's whole
    ``to_table`` of the 13 columns with JSON levels);
(b) Parquet: the store's writer (``parquet.write_parquet_atomically``: zstd, dictionary for
    short strings only, 65,536-row groups), one file per ``date=``/``symbol=`` partition as the
    store lays them out (no fsync: CPU, not the disk); write CPU, bytes on disk, and the bytes of
    the level columns alone (Parquet metadata, compressed);
(c) reading, over those files (wall time, the machine's 2 cores):
    DuckDB -- unnest every level to a row, then best bid / best ask / level count per snapshot
    (``from_json`` + ``CAST(... AS DECIMAL(38, 18))`` for JSON; ``unnest`` + ``.price`` nested);
    pyarrow -> pandas -- read, explode to one row per level (side, level, float64 price and
    amount: ``analysis.load.load_book_levels``'s shape; JSON: its loop, ``json.loads`` per side;
    nested: ``list_flatten`` / ``list_parent_indices``); for reference, today's
    ``load_book_levels`` itself on the JSON files (it also sorts and drops duplicate rows);
    Polars -- the DuckDB query as a lazy frame (``str.json_decode`` for JSON, ``explode`` +
    ``struct.field`` nested);
(d) PostgreSQL (a throwaway database, if reachable): ``text`` (today), ``jsonb``, and two native
    layouts, ``book_level[]`` (a composite ``(price numeric, amount numeric)``) and ``numeric[][]``
    (``[[price, amount], ...]``). Inserted the bulk store's way (``BulkSqlStore``: ADBC binary COPY
    into a TEMP staging table, ``INSERT ... SELECT ... ON CONFLICT DO NOTHING``, one transaction per
    5,000 rows; the batch de-duplication window is left out, every key is new): JSON and jsonb
    stage today's JSON text; the native layouts stage four ``numeric[]`` columns (ADBC cannot COPY
    an Arrow struct) from the nested column and build the arrays in the INSERT. Timed from the
    records (Arrow conversion included); then table + TOAST + index bytes, and the best-bid/ask
    query in SQL.

Every reader's answer is checked against the records (best bid/ask per snapshot, level counts,
every level value exactly): a figure of a wrong answer would be worthless.
"""

from __future__ import annotations

import itertools
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from bench import streams
from bench.harness import BenchResult
from recorder.records import BookSnapshot
from recorder.storage.codecs import levels_to_json
from recorder.storage.parquet import file_schema, write_parquet_atomically
from recorder.storage.schema import ARROW_DECIMAL, DATASETS
from recorder.venues.okex_v1.parse import ms_to_datetime

SIZES = {"tiny": 150, "small": 20_000, "full": 100_000}  # snapshots per depth (200 levels: a fifth)
DEPTHS = (20, 200)
N_SYMBOLS = 10
REPEAT = 3
BATCH = 5_000
LEVEL = pa.struct([pa.field("price", ARROW_DECIMAL), pa.field("amount", ARROW_DECIMAL)])
NESTED = pa.list_(LEVEL)
"""The nested type of one side's levels, best first."""
PG_ADMIN_URL = os.environ.get("OKEX_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
SIDES = ("bids", "asks")
_STORE_SCHEMA = DATASETS["book_snapshots"].arrow_schema
NESTED_SCHEMA = pa.schema([pa.field(f.name, NESTED, nullable=False) if f.name in SIDES else f
                           for f in _STORE_SCHEMA])
"""The ``book_snapshots`` schema with nested levels (the store's otherwise)."""


# --------------------------------------------------------------------------- the snapshots


def snapshots(n: int, depth: int, seed: int = 7) -> list[BookSnapshot]:
    """The first ``n`` snapshots of the ``depth`` channel (``depth`` levels a side at most)."""
    from recorder.venues.okex_v1.settings import V1Settings  # noqa: F401  (the pipeline's settings)

    out: list[BookSnapshot] = []
    frames = int(n * 1.8) + 100
    stream = streams.generate(frames, N_SYMBOLS, seed=seed, levels=200)
    pipeline = streams.pipeline(snapshot_depth=depth)
    t0 = ms_to_datetime(streams.BASE_TS_MS)
    for i, frame in enumerate(stream.frames):
        pipeline.process_frame("bench", t0 + timedelta(microseconds=10 * i), frame.decode())
        out.extend(r for r in pipeline.take() if isinstance(r, BookSnapshot) and r.source == "depth")
        if len(out) >= n:
            break
    return out[:n]


# --------------------------------------------------------------------------- (a) the two encodings


def json_column(levels: Sequence[tuple[tuple[Decimal, Decimal], ...]]) -> pa.Array:
    """Today's encoding: the store's own conversion of one side."""
    return pa.array(list(map(levels_to_json, levels)), pa.string())


def nested_column(levels: Sequence[tuple[tuple[Decimal, Decimal], ...]]) -> pa.Array:
    """One side as ``list<struct<price, amount>>``: exact decimals (pyarrow's Decimal conversion)."""
    offsets = np.zeros(len(levels) + 1, dtype=np.int32)
    np.cumsum([len(side) for side in levels], out=offsets[1:])
    flat = list(itertools.chain.from_iterable(levels))
    prices = pa.array([p for p, _ in flat], ARROW_DECIMAL)
    amounts = pa.array([a for _, a in flat], ARROW_DECIMAL)
    values = pa.StructArray.from_arrays([prices, amounts], fields=list(LEVEL))
    return pa.ListArray.from_arrays(pa.array(offsets), values, type=NESTED)


def nested_table(records: Sequence[BookSnapshot]) -> pa.Table:
    """The store's ``book_snapshots`` table of ``records`` with nested levels, built directly
    (the store's column plan, ``schema._book_columns``, with :func:`nested_column` for the levels)."""
    bids = [r.bids for r in records]
    asks = [r.asks for r in records]
    best_bids = [b[0] if b else (None, None) for b in bids]
    best_asks = [a[0] if a else (None, None) for a in asks]
    columns = {
        "venue": [r.venue for r in records],
        "symbol": [r.symbol for r in records], "ts_event": [r.ts_event for r in records],
        "ts_recv": [r.ts_recv for r in records], "source": [r.source for r in records],
        "depth": [max(len(b), len(a)) for b, a in zip(bids, asks, strict=True)],
        "best_bid": [b[0] for b in best_bids], "best_bid_amount": [b[1] for b in best_bids],
        "best_ask": [a[0] for a in best_asks], "best_ask_amount": [a[1] for a in best_asks],
        "seq_id": [r.seq_id for r in records],
    }
    schema = NESTED_SCHEMA
    arrays = [nested_column(bids if f.name == "bids" else asks) if f.name in SIDES
              else pa.array(columns[f.name], f.type) for f in schema]
    return pa.Table.from_arrays(arrays, schema=schema)


def tables(records: Sequence[BookSnapshot]) -> tuple[pa.Table, pa.Table]:
    """(the store's table with JSON levels, the same rows with nested levels)."""
    return DATASETS["book_snapshots"].to_table(records), nested_table(records)


def levels_of(table: pa.Table, side: str) -> list[tuple[tuple[Decimal, Decimal], ...]]:
    """The levels of one side of either encoding as Decimals (exact), for the round-trip check."""
    from recorder.storage.codecs import levels_from_json

    column = table.column(side)
    if pa.types.is_string(column.type):
        return [levels_from_json(t) for t in column.to_pylist()]
    return [tuple((lv["price"], lv["amount"]) for lv in side_levels) for side_levels in column.to_pylist()]


# --------------------------------------------------------------------------- (b) Parquet


def write_files(table: pa.Table, root: Path) -> int:
    """``table`` written as the store lays out ``book_snapshots``; returns the bytes on disk."""
    fs = pafs.LocalFileSystem()
    schema = file_schema(DATASETS["book_snapshots"])
    if pa.types.is_list(table.schema.field("bids").type):
        for side in SIDES:
            schema = schema.set(schema.get_field_index(side), pa.field(side, NESTED, nullable=False))
    dates = pc.cast(table.column("ts_event"), pa.date32())
    for (venue, day, symbol), _ in itertools.groupby(
            sorted(set(zip(table.column("venue").to_pylist(), dates.to_pylist(),
                           table.column("symbol").to_pylist(), strict=True))), key=lambda k: k):
        mask = pc.and_(pc.and_(pc.equal(table.column("venue"), venue), pc.equal(dates, pa.scalar(day))),
                       pc.equal(table.column("symbol"), symbol))
        part = table.filter(mask).select(schema.names).cast(schema)
        directory = root / "book_snapshots" / f"venue={venue}" / f"date={day}" / f"symbol={symbol}"
        directory.mkdir(parents=True, exist_ok=True)
        write_parquet_atomically(fs, str(directory / "part-0.parquet"), part, fsync=False)
    return sum(f.stat().st_size for f in root.rglob("*.parquet"))


def level_bytes(root: Path) -> int:
    """Compressed bytes of the ``bids``/``asks`` column chunks (every leaf) in the files under root."""
    total = 0
    for f in root.rglob("*.parquet"):
        meta = pq.ParquetFile(f).metadata
        for g in range(meta.num_row_groups):
            group = meta.row_group(g)
            for c in range(group.num_columns):
                column = group.column(c)
                if column.path_in_schema.split(".")[0] in SIDES:
                    total += column.total_compressed_size
    return total


# --------------------------------------------------------------------------- (c) reading


def _glob(root: Path) -> str:
    return str(root / "book_snapshots" / "*" / "*" / "*" / "*.parquet")


def duckdb_best(root: Path, nested: bool) -> pa.Table:
    """Every level unnested to a row, then per snapshot (symbol, ts_event, ts_recv): best bid
    (max bid price), best ask (min ask price), levels; ordered by symbol, ts_recv."""
    import duckdb

    def side(name: str, label: str) -> str:  # our own column names: no user input in these queries
        if nested:
            level = f"SELECT symbol, ts_event, ts_recv, unnest({name}) AS l FROM snaps"  # noqa: S608
            price, amount = "l.price", "l.amount"
        else:
            level = (f"SELECT symbol, ts_event, ts_recv, unnest(from_json({name}, '[[\"VARCHAR\"]]')) AS l "  # noqa: S608
                     "FROM snaps")
            price, amount = "CAST(l[1] AS DECIMAL(38, 18))", "CAST(l[2] AS DECIMAL(38, 18))"
        return (f"SELECT symbol, ts_event, ts_recv, '{label}' AS side, {price} AS price, "  # noqa: S608
                f"{amount} AS amount FROM ({level})")

    query = f"""
        WITH snaps AS (SELECT * FROM read_parquet('{_glob(root)}', hive_partitioning = true)),
             levels AS ({side('bids', 'bid')} UNION ALL BY NAME {side('asks', 'ask')})
        SELECT symbol, ts_event, ts_recv,
               max(price) FILTER (WHERE side = 'bid') AS best_bid,
               min(price) FILTER (WHERE side = 'ask') AS best_ask,
               count(*) AS levels
        FROM levels GROUP BY symbol, ts_event, ts_recv ORDER BY symbol, ts_recv"""  # noqa: S608
    con = duckdb.connect()
    try:
        return con.sql(query).to_arrow_table()
    finally:
        con.close()


def polars_best(root: Path, nested: bool) -> pa.Table:
    """:func:`duckdb_best` as a Polars lazy frame (same columns, same order)."""
    import polars as pl

    scan = pl.scan_parquet(_glob(root), hive_partitioning=True)
    keys = ["symbol", "ts_event", "ts_recv"]
    decimal = pl.Decimal(38, 18)
    parts = []
    for name, label in (("bids", "bid"), ("asks", "ask")):
        col = pl.col(name)
        if nested:
            levels = scan.select(*keys, col).explode(name).select(
                *keys, pl.lit(label).alias("side"), col.struct.field("price").alias("price"))
        else:
            decoded = col.str.json_decode(pl.List(pl.List(pl.String)))
            levels = scan.select(*keys, decoded).explode(name).select(
                *keys, pl.lit(label).alias("side"), col.list.get(0).cast(decimal).alias("price"))
        parts.append(levels)
    price = pl.col("price")
    best = pl.concat(parts).group_by(keys).agg(
        price.filter(pl.col("side") == "bid").max().alias("best_bid"),
        price.filter(pl.col("side") == "ask").min().alias("best_ask"),
        pl.len().alias("levels"),
    ).sort("symbol", "ts_recv")
    return best.collect().to_arrow()


def pandas_levels(root: Path, nested: bool) -> Any:
    """pyarrow read + explode to one row per level: a pandas frame (symbol, ts_event, ts_recv, side,
    level, price, amount as float64), bids of every snapshot then asks."""
    import json

    import pandas as pd

    from analysis.load import _decimal_floats

    snaps = pads.dataset(root / "book_snapshots", format="parquet", partitioning="hive").to_table(
        columns=["symbol", "ts_event", "ts_recv", "bids", "asks"])
    meta = snaps.select(["symbol", "ts_event", "ts_recv"])
    frames = []
    for name, label in (("bids", "bid"), ("asks", "ask")):
        column = snaps.column(name)
        if nested:
            column = column.combine_chunks()
            parents = pc.list_parent_indices(column)
            flat = pc.list_flatten(column)
            starts = pc.take(column.offsets, parents)
            level = pc.subtract(pa.array(np.arange(len(flat), dtype=np.int32)), starts)
            # the loaders' exact float conversion: a direct decimal128 -> float64 cast can be an ulp off
            prices = pa.array(_decimal_floats(flat.field("price")))
            amounts = pa.array(_decimal_floats(flat.field("amount")))
        else:  # analysis.load.load_book_levels's loop
            index: list[int] = []
            levels: list[int] = []
            ptext: list[str] = []
            atext: list[str] = []
            for row, text in enumerate(column.to_pylist()):
                parsed = json.loads(text)
                n = len(parsed)
                index.extend([row] * n)
                levels.extend(range(n))
                ptext.extend(p for p, _ in parsed)
                atext.extend(a for _, a in parsed)
            parents = pa.array(index, pa.int64())
            level = pa.array(levels, pa.int32())
            prices = pc.cast(pa.array(ptext, pa.string()), pa.float64())
            amounts = pc.cast(pa.array(atext, pa.string()), pa.float64())
        part = meta.take(parents)
        part = part.append_column("side", pa.array([label] * len(part), pa.string()))
        part = part.append_column("level", level.cast(pa.int64()))
        part = part.append_column("price", prices).append_column("amount", amounts)
        frames.append(part.to_pandas())
    return pd.concat(frames, ignore_index=True)


Best = tuple[str, Any, Decimal | None, Decimal | None, int]  # symbol, ts_recv, best bid, best ask, levels


def expected_best(records: Sequence[BookSnapshot]) -> list[Best]:
    """(symbol, ts_recv, best bid, best ask, levels) per snapshot, ordered as the readers order."""
    rows = [(r.symbol, r.ts_recv, r.bids[0][0] if r.bids else None, r.asks[0][0] if r.asks else None,
             len(r.bids) + len(r.asks)) for r in records]
    return sorted(rows, key=lambda t: (t[0], t[1]))


def answer(best: pa.Table) -> list[Best]:
    cols = [best.column(c).to_pylist() for c in ("symbol", "ts_recv", "best_bid", "best_ask", "levels")]
    return list(zip(*cols, strict=True))


# --------------------------------------------------------------------------- (d) PostgreSQL


_PG_LAYOUTS = {  # name -> (column type, expression over the staged columns, SQL giving one side's prices)
    "text (today)": ("text", "{side}", "SELECT (e->>0)::numeric FROM jsonb_array_elements({side}::jsonb) e"),
    "jsonb": ("jsonb", "{side}::jsonb", "SELECT (e->>0)::numeric FROM jsonb_array_elements({side}) e"),
    "book_level[] (composite)": (
        "book_level[]",
        "ARRAY(SELECT ROW(p, a)::book_level FROM unnest({side}_price, {side}_amount) AS u(p, a))",
        "SELECT (l).price FROM unnest({side}) l"),
    "numeric[][]": (
        "numeric[]",
        "ARRAY(SELECT ARRAY[p, a] FROM unnest({side}_price, {side}_amount) AS u(p, a))",
        "SELECT unnest({side}[:][1:1])"),  # the price column as one slice: the array detoasted once
}


def _pg_stage(table: pa.Table, native: bool) -> pa.Table:
    """The staging table: BulkSqlStore's values (decimals as canonical text, cast back in the INSERT);
    native layouts stage each side as two ``list<decimal128>`` (numeric[]) columns."""
    from recorder.storage.sql_bulk import _postgres_values

    if not native:
        return _postgres_values(table)
    flat = table.drop_columns(list(SIDES))
    out = _postgres_values(flat)
    for side in SIDES:
        column = table.column(side).combine_chunks()
        for field in ("price", "amount"):
            values = pc.list_flatten(column).field(field)
            out = out.append_column(f"{side}_{field}", pa.ListArray.from_arrays(column.offsets, values))
    return out


def _pg_insert(target: str, layout: str, names: list[str]) -> str:
    expression = _PG_LAYOUTS[layout][1]
    decimals = {f.name for f in DATASETS["book_snapshots"].arrow_schema if pa.types.is_decimal(f.type)}
    select = []
    for n in names:
        if n in SIDES:
            select.append(expression.format(side=n))
        elif n in decimals:
            select.append(f"{n}::numeric")
        else:
            select.append(n)
    return (f"INSERT INTO {target} ({', '.join(names)}) SELECT {', '.join(select)} FROM stage "  # noqa: S608
            f"ON CONFLICT DO NOTHING")


def postgres(records: Sequence[BookSnapshot], result: BenchResult, depth: int) -> None:
    """(d): insert rate, bytes, and the best-bid/ask query for each layout; figures into ``result``."""
    import adbc_driver_postgresql.dbapi as pgdb
    import sqlalchemy as sa

    from recorder.storage.migrate import upgrade

    admin_url = sa.make_url(PG_ADMIN_URL.replace("postgresql+psycopg://", "postgresql://"))
    name = f"bench_nested_{os.getpid()}"
    try:
        admin = pgdb.connect(admin_url.render_as_string(hide_password=False), autocommit=True)
        with admin.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
    except Exception as exc:  # no server: the figures are left out
        result.notes.append(f"PostgreSQL not reachable at {admin_url!r} ({type(exc).__name__}): (d) left out")
        return
    url = admin_url.set(database=name).render_as_string(hide_password=False)
    try:
        upgrade(url.replace("postgresql://", "postgresql+psycopg://"))
        conn = pgdb.connect(url)
        with conn.cursor() as cur:
            cur.execute("CREATE TYPE book_level AS (price numeric, amount numeric)")
            for i, layout in enumerate(_PG_LAYOUTS):
                cur.execute(f"CREATE TABLE bs_{i} (LIKE book_snapshots INCLUDING ALL)")
                for side in SIDES:
                    cur.execute(f"ALTER TABLE bs_{i} ALTER COLUMN {side} TYPE {_PG_LAYOUTS[layout][0]} "
                                f"USING NULL")
        conn.commit()
        seconds: dict[str, float] = dict.fromkeys(_PG_LAYOUTS, float("inf"))
        for _ in range(2):  # alternately; the first round's rows are deleted, the best round kept
            for i, layout in enumerate(_PG_LAYOUTS):
                native = i >= 2
                with conn.cursor() as cur:
                    cur.execute(f"TRUNCATE bs_{i}")
                conn.commit()
                start = time.perf_counter()
                staged = False
                for b in range(0, len(records), BATCH):
                    chunk = records[b:b + BATCH]
                    table = nested_table(chunk) if native else DATASETS["book_snapshots"].to_table(chunk)
                    stage = _pg_stage(table, native)
                    with conn.cursor() as cur:
                        cur.adbc_ingest("stage", stage, mode="append" if staged else "create", temporary=True)
                        staged = True
                        cur.execute(_pg_insert(f"bs_{i}", layout, [f.name for f in table.schema]))
                        cur.execute("DELETE FROM stage")
                    conn.commit()
                seconds[layout] = min(seconds[layout], time.perf_counter() - start)
                with conn.cursor() as cur:
                    cur.execute("DROP TABLE stage")
                conn.commit()
        base = seconds["text (today)"]
        answers = {}
        for i, layout in enumerate(_PG_LAYOUTS):
            with conn.cursor() as cur:
                cur.execute(f"SELECT pg_total_relation_size('bs_{i}'), count(*) FROM bs_{i}")  # noqa: S608
                size, rows = cur.fetchone()
                prices = _PG_LAYOUTS[layout][2]
                bid, ask = prices.format(side="bids"), prices.format(side="asks")
                query = (f"SELECT symbol, ts_recv, ({bid} ORDER BY 1 DESC LIMIT 1), "  # noqa: S608
                         f"({ask} ORDER BY 1 LIMIT 1) FROM bs_{i} ORDER BY symbol, ts_recv")
                best_s = float("inf")
                for _ in range(REPEAT):
                    start = time.perf_counter()
                    cur.execute(query)
                    got = cur.fetch_arrow_table()
                    best_s = min(best_s, time.perf_counter() - start)
            conn.commit()
            answers[layout] = got
            result.add(f"{depth} levels: PostgreSQL {layout}: insert (bulk path, from records)",
                       len(records) / seconds[layout], "rows/s",
                       f"{base / seconds[layout]:.2f}x text" if layout != "text (today)" else "")
            result.add(f"{depth} levels: PostgreSQL {layout}: bytes / snapshot (table+TOAST+index)",
                       size / rows, "B")
            result.add(f"{depth} levels: PostgreSQL {layout}: best bid/ask per snapshot query",
                       best_s * 1e3, "ms")
        expected = [(s, t, b, a) for s, t, b, a, _ in expected_best(records)]
        for layout, got in answers.items():  # numeric arrives as text (ADBC), timestamps as aware UTC
            cols = [got.column(c).to_pylist() for c in range(4)]
            rows = [(s, t.timestamp(), None if b is None else Decimal(b), None if a is None else Decimal(a))
                    for s, t, b, a in zip(*cols, strict=True)]
            if rows != [(s, t.timestamp(), b, a) for s, t, b, a in expected]:
                raise AssertionError(f"PostgreSQL {layout}: best bid/ask differ from the records")
        conn.close()
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


# --------------------------------------------------------------------------- the run


def _best(fn: Callable[[], Any], clock: Callable[[], float] = time.perf_counter) -> tuple[float, Any]:
    best = float("inf")
    value = None
    for _ in range(REPEAT):
        start = clock()
        value = fn()
        best = min(best, clock() - start)
    return best, value


def _alternate(json_fn: Callable[[], Any], nested_fn: Callable[[], Any],
               clock: Callable[[], float] = time.perf_counter) -> tuple[float, float, Any, Any]:
    """Best of REPEAT each, JSON and nested alternately: (json s, nested s, json value, nested value)."""
    best = [float("inf"), float("inf")]
    values: list[Any] = [None, None]
    for _ in range(REPEAT):
        for k, fn in enumerate((json_fn, nested_fn)):
            start = clock()
            values[k] = fn()
            best[k] = min(best[k], clock() - start)
    return best[0], best[1], values[0], values[1]


def measure_depth(records: list[BookSnapshot], result: BenchResult, root: Path, pg: bool) -> None:
    depth = max(max(len(r.bids), len(r.asks)) for r in records)
    n = len(records)
    per = f"{depth} levels"
    levels = sum(len(r.bids) + len(r.asks) for r in records)
    result.add(f"{per}: snapshots", n, "rows", f"{levels / n:.0f} levels a snapshot (both sides)")
    sides = {side: [getattr(r, side) for r in records] for side in SIDES}

    # (a) the level columns from the records, CPU
    j, k, jv, kv = _alternate(lambda: [json_column(sides[s]) for s in SIDES],
                              lambda: [nested_column(sides[s]) for s in SIDES], time.process_time)
    result.add(f"{per}: (a) build level columns CPU per 1,000 snapshots: JSON (store path)",
               j / n * 1e6, "ms")
    result.add(f"{per}: (a) build level columns CPU per 1,000 snapshots: nested", k / n * 1e6, "ms",
               f"{k / j:.2f}x JSON")
    j, k, text, nested = _alternate(lambda: DATASETS["book_snapshots"].to_table(records),
                                    lambda: nested_table(records), time.process_time)
    result.add(f"{per}: (a) whole table (13 columns) CPU per 1,000 snapshots: JSON (store's to_table)",
               j / n * 1e6, "ms")
    result.add(f"{per}: (a) whole table (13 columns) CPU per 1,000 snapshots: nested", k / n * 1e6, "ms",
               f"{k / j:.2f}x JSON")
    if not text.drop_columns(list(SIDES)).equals(nested.drop_columns(list(SIDES))):
        raise AssertionError("the nested table's other columns differ from the store's")
    for side in SIDES:  # both encodings hold the records' levels, value for value
        if levels_of(text, side) != sides[side] or levels_of(nested, side) != sides[side]:
            raise AssertionError(f"{side}: an encoding does not round-trip to the records' levels")
    del jv, kv

    # (b) Parquet write CPU and bytes
    jroot, kroot = root / f"json{depth}", root / f"nested{depth}"
    counter = itertools.count()

    def write(table: pa.Table, base: Path) -> int:
        target = base / str(next(counter))
        size = write_files(table, target)
        return size

    j, k, jbytes, kbytes = _alternate(lambda: write(text, jroot), lambda: write(nested, kroot),
                                      time.process_time)
    result.add(f"{per}: (b) Parquet write CPU per 1,000 snapshots: JSON", j / n * 1e6, "ms")
    result.add(f"{per}: (b) Parquet write CPU per 1,000 snapshots: nested", k / n * 1e6, "ms",
               f"{k / j:.2f}x JSON")
    jfiles, kfiles = jroot / "0", kroot / "1"
    result.add(f"{per}: (b) Parquet bytes / snapshot: JSON", jbytes / n, "B")
    result.add(f"{per}: (b) Parquet bytes / snapshot: nested", kbytes / n, "B",
               f"{kbytes / jbytes:.2f}x JSON")
    jl, kl = level_bytes(jfiles), level_bytes(kfiles)
    result.add(f"{per}: (b) of which level columns: JSON", jl / n, "B")
    result.add(f"{per}: (b) of which level columns: nested", kl / n, "B", f"{kl / jl:.2f}x JSON")
    back = pads.dataset(kfiles / "book_snapshots", format="parquet", partitioning="hive").to_table()
    order = pc.sort_indices(back, [("symbol", "ascending"), ("ts_recv", "ascending")])
    back = back.take(order)
    ordered = sorted(records, key=lambda r: (r.symbol, r.ts_recv))
    for side in SIDES:  # the nested file reads back to the records' levels, exactly
        if levels_of(back, side) != [getattr(r, side) for r in ordered]:
            raise AssertionError(f"{side}: the nested Parquet file does not read back to the records")

    # (c) reading
    expected = expected_best(records)
    j, k, jv, kv = _alternate(lambda: duckdb_best(jfiles, False), lambda: duckdb_best(kfiles, True))
    if answer(jv) != expected or answer(kv) != expected:
        raise AssertionError("DuckDB: best bid/ask per snapshot differ from the records")
    result.add(f"{per}: (c) DuckDB unnest + best bid/ask per snapshot: JSON", n / j, "snapshots/s")
    result.add(f"{per}: (c) DuckDB unnest + best bid/ask per snapshot: nested", n / k, "snapshots/s",
               f"{j / k:.2f}x JSON")
    j, k, jv, kv = _alternate(lambda: pandas_levels(jfiles, False), lambda: pandas_levels(kfiles, True))
    if not jv.equals(kv) or len(jv) != levels:
        raise AssertionError("pandas: the exploded levels differ between the encodings")
    result.add(f"{per}: (c) pyarrow read + explode to pandas: JSON", levels / j, "levels/s")
    result.add(f"{per}: (c) pyarrow read + explode to pandas: nested", levels / k, "levels/s",
               f"{j / k:.2f}x JSON")
    from analysis.load import load_book_levels

    loader, frame = _best(lambda: load_book_levels(jfiles))
    if len(frame) != levels:
        raise AssertionError("load_book_levels: not every level")
    result.add(f"{per}: (c) for reference: today's analysis.load.load_book_levels (JSON)", levels / loader,
               "levels/s")
    try:
        import polars  # noqa: F401
    except ImportError:
        result.notes.append("Polars not installed (the analysis extra): its figures left out")
    else:
        j, k, jv, kv = _alternate(lambda: polars_best(jfiles, False), lambda: polars_best(kfiles, True))
        if answer(jv) != expected or answer(kv) != expected:
            raise AssertionError("Polars: best bid/ask per snapshot differ from the records")
        result.add(f"{per}: (c) Polars explode + best bid/ask per snapshot: JSON", n / j, "snapshots/s")
        result.add(f"{per}: (c) Polars explode + best bid/ask per snapshot: nested", n / k, "snapshots/s",
                   f"{j / k:.2f}x JSON")

    # (d) PostgreSQL
    if pg:
        postgres(records, result, depth)


def run(size: str, *, pg: bool = True) -> BenchResult:
    n = SIZES[size]
    result = BenchResult("nested_levels", size)
    with tempfile.TemporaryDirectory(prefix="bench-nested-") as tmp:
        for depth in DEPTHS:
            records = snapshots(n if depth == 20 else max(n // 5, 30), depth)
            measure_depth(records, result, Path(tmp), pg)
    result.notes.append(
        f"{N_SYMBOLS} symbols of bench.streams, depth-channel snapshots; CPU = process time, best of "
        f"{REPEAT}, JSON and nested alternately; reading = wall time; every reader's answer checked "
        "against the records")
    return result


if __name__ == "__main__":  # python -m bench.nested_levels [size]
    from bench.harness import render

    r = run(sys.argv[1] if len(sys.argv) > 1 else "small")
    print(render([r]))
    for note in r.notes:
        print("note:", note)
