"""The honest floor: the recorder's job done the fastest way its libraries allow, without a framework.

Same input, same output as ``run_in_process`` -> ``StorageWriter(SqlStore, ParquetStore)``:
every field of ``book_snapshots``, ``tickers`` and ``deals``, exact values, both stores,
the same durability per flush. What it leaves out is what makes the recorder a
product: accounting, feed events, quarantine, fault handling (a crossed book, a bad
frame or a value off its instrument's scale raises here), retries and spill.

* **Decode**: msgspec into Structs (``list[_Push]`` with the data kept raw, then one typed
  decoder per channel kind).
* **Book**: integer ticks. Prices and amounts are fixed-point ints scaled per instrument
  from the pair table's increments (``recorder/venues/okex_v1/data/pairs_increment.csv``); each
  side is ``{price_ticks: amount_ticks}`` plus the sorted prices (bids negated, so both
  sides are ascending, best first). The level text of the book's JSON columns is the
  text the exchange sent (kept beside the ticks, as the recorder keeps the wire digits).
  No Decimal per level; snapshot-on-change compares the top 20 ticks, as the recorder
  compares its top 20 Decimals.
* **Columns**: plain lists per dataset; exact ``decimal128(38, 18)`` built at C level,
  from scaled integers (book columns: int64 buffers, one cast per scale) or from the
  exchange's decimal strings (ticker and deal fields: Arrow's exact string cast). No
  record object per row.
* **Durability per flush**: every dataset's Arrow table is appended to an Arrow IPC
  stream journal and fsync'd (like the recorder's Parquet journal), and the SQL
  transaction is committed, before the flush returns.
* **SQL**: ADBC. SQLite (``adbc-driver-sqlite``, WAL, ``synchronous=NORMAL`` like the
  recorder): bulk insert into a temporary staging table, then ``INSERT ... SELECT ... ON
  CONFLICT DO NOTHING`` into the real table, one transaction. PostgreSQL
  (``adbc-driver-postgresql``: binary COPY into a temporary staging table), then the
  same conflict-ignoring ``INSERT ... SELECT``, one transaction. Values as the recorder
  stores them: canonical decimal text and fixed-width UTC text on SQLite, ``NUMERIC`` and
  ``timestamptz`` on PostgreSQL. The schema is the project's migrations.
* **Parquet**: at the end (the recorder rolls its journal then, below 1 M rows), the
  journaled rows become zstd Parquet files in the project's layout
  (``<dataset>/date=YYYY-MM-DD/symbol=<symbol>/part-*.parquet``, the key column not
  repeated in the files) with ``pyarrow.dataset.write_dataset``.
"""

from __future__ import annotations

import os
from bisect import bisect_left, insort
from collections.abc import Iterable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from recorder.storage.schema import DATASETS, conform, plain_decimal
from recorder.storage.sql_bulk import sqlite_values
from recorder.venues.okex_v1.pairs import pairs

__all__ = ["HonestFloor", "run_honest_floor", "scales"]

DEPTH = 20  # snapshot depth (the recorder's default)
MAX_LEVELS = 200  # levels kept per side (the recorder's OrderBook.max_depth)
_DAY_US = 86_400_000_000
_HALF_DAY_US = _DAY_US // 2
_UTC8_US = 8 * 3_600_000_000
_D = pa.decimal128(38, 18)
_TS = pa.timestamp("us", tz="UTC")
_POW = [10**i for i in range(40)]


class _Depth(msgspec.Struct):
    timestamp: int
    asks: list[tuple[str, str]] = []
    bids: list[tuple[str, str]] = []


class _Ticker(msgspec.Struct):
    buy: str
    sell: str
    last: str
    high: str
    low: str
    vol: str
    timestamp: int
    change: str | None = None
    dayHigh: str | None = None
    dayLow: str | None = None


class _Push(msgspec.Struct):
    channel: str
    data: msgspec.Raw


_push_list = msgspec.json.Decoder(list[_Push])
_depth = msgspec.json.Decoder(_Depth)
_ticker = msgspec.json.Decoder(_Ticker)
_deals = msgspec.json.Decoder(list[tuple[str, str, str, str, str]])
_levels_json = msgspec.json.Encoder()


def _scale(increment: Decimal) -> int:
    return max(0, -int(increment.normalize().as_tuple().exponent))  # type: ignore[arg-type]


def scales(symbol: str) -> tuple[int, int]:
    """(price scale, amount scale) of ``symbol``: decimals of its quote and base increments."""
    p = pairs()[symbol]
    return _scale(p.quote_increment), _scale(p.base_increment)


def _ticks(text: str, scale: int) -> int:
    """``"12.345"`` at scale 4 -> 123450, exactly; raises ValueError if the value is off the scale."""
    dot = text.find(".")
    if dot < 0:
        return int(text) * _POW[scale]
    n = len(text) - dot - 1
    if n > scale:
        stripped = text.rstrip("0")
        n = len(stripped) - dot - 1
        if n > scale:
            raise ValueError(f"{text!r} has more decimals than the instrument's scale {scale}")
        text = stripped
    return int(text[:dot] + text[dot + 1:]) * _POW[scale - n]


def _level_text(text: str) -> str:
    """The text the recorder writes for a level value: str(Decimal) unless that has an exponent."""
    d = Decimal(text)
    s = str(d)
    return plain_decimal(d) if "E" in s else s


class _Book:
    """One book: per side ``{ticks: amount ticks}``, ``{ticks: (price text, amount text)}``, sorted keys."""

    __slots__ = ("ask_amt", "ask_keys", "ask_lvl", "bid_amt", "bid_keys", "bid_lvl", "last_top", "ps", "qs")

    def __init__(self, ps: int, qs: int) -> None:
        self.ps, self.qs = ps, qs
        self.bid_amt: dict[int, int] = {}
        self.bid_lvl: dict[int, tuple[str, str]] = {}
        self.bid_keys: list[int] = []  # negated prices: ascending = best first
        self.ask_amt: dict[int, int] = {}
        self.ask_lvl: dict[int, tuple[str, str]] = {}
        self.ask_keys: list[int] = []
        self.last_top: tuple[Any, ...] | None = None

    def load(self, bids: list[tuple[str, str]], asks: list[tuple[str, str]]) -> None:
        for sign, levels, amt, lvl in ((-1, bids, self.bid_amt, self.bid_lvl),
                                       (1, asks, self.ask_amt, self.ask_lvl)):
            amt.clear()
            lvl.clear()
            ps, qs = self.ps, self.qs
            for level in levels:  # a price repeated within one push: the last one wins
                k = sign * _ticks(level[0], ps)
                a = _ticks(level[1], qs)
                if a:
                    amt[k] = a
                    lvl[k] = level
                elif k in amt:
                    del amt[k], lvl[k]
        self.bid_keys = sorted(self.bid_amt)
        self.ask_keys = sorted(self.ask_amt)

    def change(self, levels: list[tuple[str, str]], sign: int) -> None:
        if sign < 0:
            amt, lvl, keys = self.bid_amt, self.bid_lvl, self.bid_keys
        else:
            amt, lvl, keys = self.ask_amt, self.ask_lvl, self.ask_keys
        ps, qs = self.ps, self.qs
        for level in levels:
            k = sign * _ticks(level[0], ps)
            a = _ticks(level[1], qs)
            if not a:
                if amt.pop(k, None) is not None:
                    del lvl[k]
                    del keys[bisect_left(keys, k)]
            else:
                if k not in amt:
                    insort(keys, k)
                amt[k] = a
                lvl[k] = level

    def trim(self) -> None:
        for amt, lvl, keys in ((self.bid_amt, self.bid_lvl, self.bid_keys),
                               (self.ask_amt, self.ask_lvl, self.ask_keys)):
            if len(keys) > MAX_LEVELS:
                for k in keys[MAX_LEVELS:]:
                    del amt[k], lvl[k]
                del keys[MAX_LEVELS:]


def _levels_text(levels: list[tuple[str, str]]) -> str:
    text = _levels_json.encode(levels).decode()
    if '"0.000000' in text or "E" in text or "e" in text:  # values the recorder writes in plain form
        return _levels_json.encode([(_level_text(p), _level_text(a)) for p, a in levels]).decode()
    return text


def _deal_time_us(hhmmss: str, recv_us: int) -> int:
    """The recorder's ``deal_timestamp`` in integers: the UTC+8 wall time nearest to the receipt."""
    local = recv_us + _UTC8_US
    secs = int(hhmmss[:2]) * 3600 + int(hhmmss[3:5]) * 60 + int(hhmmss[6:8])
    cand = local - local % _DAY_US + secs * 1_000_000
    delta = cand - local
    if delta > _HALF_DAY_US:
        cand -= _DAY_US
    elif delta <= -_HALF_DAY_US:
        cand += _DAY_US
    return cand - _UTC8_US


def _scaled_decimal(values: list[int | None], row_scales: list[int]) -> pa.Array:
    """Exact decimal128(38, 18) from per-row scaled integers (one int64 buffer and one cast per scale)."""
    n = len(values)
    valid = np.array([v is not None for v in values], dtype=bool)
    ints = np.array([0 if v is None else v for v in values], dtype=np.int64)
    sc = np.array(row_scales, dtype=np.int8)
    out: pa.Array | None = None
    for s in np.unique(sc).tolist():
        buf = np.zeros((n, 2), np.int64)
        buf[:, 0] = ints
        buf[:, 1] = ints >> 63
        arr = pa.Array.from_buffers(pa.decimal128(38, s), n, [None, pa.py_buffer(buf)]).cast(_D)
        out = arr if out is None else pc.if_else(pa.array(sc == s), arr, out)
    assert out is not None
    if not valid.all():
        out = pc.if_else(pa.array(valid), out, pa.nulls(n, _D))
    return out


def _dec_strings(values: list[str | None]) -> pa.Array:
    return pa.array(values, pa.string()).cast(_D)  # exact: Arrow refuses rather than rounds


class _Columns:
    def __init__(self) -> None:
        self.book: dict[str, list[Any]] = {k: [] for k in (
            "symbol", "ts_event", "ts_recv", "source", "depth", "best_bid", "best_bid_amount",
            "best_ask", "best_ask_amount", "bids", "asks", "ps", "qs")}
        self.tick: dict[str, list[Any]] = {k: [] for k in (
            "symbol", "ts_event", "ts_recv", "buy", "sell", "last", "high", "low", "vol", "change",
            "day_high", "day_low")}
        self.deal: dict[str, list[Any]] = {k: [] for k in (
            "symbol", "tid", "price", "amount", "side", "ts_event", "ts_recv")}

    def tables(self) -> dict[str, pa.Table]:
        out: dict[str, pa.Table] = {}
        b = self.book
        if b["symbol"]:
            schema = DATASETS["book_snapshots"].arrow_schema
            cols = {
                "symbol": pa.array(b["symbol"], pa.string()),
                "ts_event": pa.array(b["ts_event"], pa.int64()).cast(_TS),
                "ts_recv": pa.array(b["ts_recv"], pa.int64()).cast(_TS),
                "source": pa.array(b["source"], pa.string()),
                "depth": pa.array(b["depth"], pa.int32()),
                "best_bid": _scaled_decimal(b["best_bid"], b["ps"]),
                "best_bid_amount": _scaled_decimal(b["best_bid_amount"], b["qs"]),
                "best_ask": _scaled_decimal(b["best_ask"], b["ps"]),
                "best_ask_amount": _scaled_decimal(b["best_ask_amount"], b["qs"]),
                "bids": pa.array(b["bids"], pa.string()),
                "asks": pa.array(b["asks"], pa.string()),
            }
            out["book_snapshots"] = _conformed(cols, schema)
        t = self.tick
        if t["symbol"]:
            schema = DATASETS["tickers"].arrow_schema
            cols = {f.name: (_dec_strings(t[f.name]) if f.type == _D and f.name in t else None)
                    for f in schema}
            cols["symbol"] = pa.array(t["symbol"], pa.string())
            cols["ts_event"] = pa.array(t["ts_event"], pa.int64()).cast(_TS)
            cols["ts_recv"] = pa.array(t["ts_recv"], pa.int64()).cast(_TS)
            out["tickers"] = _conformed(cols, schema)
        d = self.deal
        if d["symbol"]:
            schema = DATASETS["deals"].arrow_schema
            cols = {
                "symbol": pa.array(d["symbol"], pa.string()), "tid": pa.array(d["tid"], pa.int64()),
                "price": _dec_strings(d["price"]), "amount": _dec_strings(d["amount"]),
                "side": pa.array(d["side"], pa.string()),
                "ts_event": pa.array(d["ts_event"], pa.int64()).cast(_TS),
                "ts_recv": pa.array(d["ts_recv"], pa.int64()).cast(_TS),
            }
            out["deals"] = _conformed(cols, schema)
        return out


def _conformed(cols: dict[str, Any], schema: pa.Schema) -> pa.Table:
    """The columns built here in ``schema``: venue okex_v1, the columns not built null (revision 0003)."""
    return conform(pa.table({k: v for k, v in cols.items() if v is not None}), schema)


_SIDES = {"bid": "buy", "ask": "sell"}


class HonestFloor:
    """Frames in, rows out to SQL (ADBC) + a fsync'd Arrow IPC journal; Parquet files at :meth:`close`.

    ``sql_url``: ``sqlite:///path`` or ``postgresql://...`` (libpq URL; ``+psycopg`` is
    dropped), already migrated to head. ``work`` holds the journal; ``parquet_root`` the
    datasets.
    """

    def __init__(self, sql_url: str, parquet_root: Path, work: Path, *, fsync: bool = True) -> None:
        self.parquet_root = parquet_root
        self.journal_dir = work / "floor-journal"
        self.journal_dir.mkdir(parents=True, exist_ok=True)
        self.fsync = fsync
        self.books: dict[tuple[str, str], _Book] = {}
        self.scales: dict[str, tuple[int, int]] = {}
        self.cols = _Columns()
        self.rows = {"book_snapshots": 0, "tickers": 0, "deals": 0}
        self._journal: dict[str, tuple[Any, Any]] = {}
        self.pg = sql_url.startswith("postgresql")
        if self.pg:
            import adbc_driver_postgresql.dbapi as pgdb

            self.conn = pgdb.connect(sql_url.replace("postgresql+psycopg://", "postgresql://"))
        else:
            import adbc_driver_sqlite.dbapi as sqdb

            path = sql_url.removeprefix("sqlite:///")
            with sqdb.connect(path, autocommit=True) as conn, conn.cursor() as cur:
                cur.execute("PRAGMA journal_mode=WAL")  # persistent in the file
            self.conn = sqdb.connect(path, autocommit=True)
            with self.conn.cursor() as cur:
                cur.execute("PRAGMA synchronous=NORMAL")  # per connection, as the recorder sets it
            self.conn.adbc_connection.set_autocommit(False)
        self.cur = self.conn.cursor()
        self._staged: set[str] = set()

    # -- decode and book ---------------------------------------------------------------------------

    def process(self, items: Iterable[tuple[int, bytes | str]]) -> None:
        """Decode ``(ts_recv epoch µs, frame)`` items; rows gather until :meth:`flush`."""
        books, cols = self.books, self.cols
        bk, tk, dl = cols.book, cols.tick, cols.deal
        scales_of = self.scales
        for recv_us, frame in items:
            for push in _push_list.decode(frame):
                ch = push.channel
                if ch.endswith("_depth") or ch.endswith("_depth_20"):
                    full = ch.endswith("_20")
                    sym = ch[12:-9] if full else ch[12:-6]
                    kind = "depth_20" if full else "depth"
                    d = _depth.decode(push.data)
                    book = books.get((sym, kind))
                    if book is None:
                        sc = scales_of.get(sym) or scales_of.setdefault(sym, scales(sym))
                        book = books[(sym, kind)] = _Book(*sc)
                        book.load(d.bids, d.asks)
                    elif full:
                        book.load(d.bids, d.asks)
                    else:
                        if d.bids:
                            book.change(d.bids, -1)
                        if d.asks:
                            book.change(d.asks, 1)
                    book.trim()
                    bkeys, akeys = book.bid_keys[:DEPTH], book.ask_keys[:DEPTH]
                    if bkeys and akeys and -bkeys[0] >= akeys[0]:
                        raise ValueError(f"crossed book {sym}: the honest floor does not handle faults")
                    bamt = list(map(book.bid_amt.__getitem__, bkeys))
                    aamt = list(map(book.ask_amt.__getitem__, akeys))
                    top = (bkeys, bamt, akeys, aamt)
                    if top == book.last_top:
                        continue
                    book.last_top = top
                    bk["symbol"].append(sym)
                    bk["ts_event"].append(d.timestamp * 1000)
                    bk["ts_recv"].append(recv_us)
                    bk["source"].append(kind)
                    bk["depth"].append(max(len(bkeys), len(akeys)))
                    bk["best_bid"].append(-bkeys[0] if bkeys else None)
                    bk["best_bid_amount"].append(bamt[0] if bkeys else None)
                    bk["best_ask"].append(akeys[0] if akeys else None)
                    bk["best_ask_amount"].append(aamt[0] if akeys else None)
                    bk["bids"].append(_levels_text(list(map(book.bid_lvl.__getitem__, bkeys))))
                    bk["asks"].append(_levels_text(list(map(book.ask_lvl.__getitem__, akeys))))
                    bk["ps"].append(book.ps)
                    bk["qs"].append(book.qs)
                elif ch.endswith("_ticker"):
                    t = _ticker.decode(push.data)
                    tk["symbol"].append(ch[12:-7])
                    tk["ts_event"].append(t.timestamp * 1000)
                    tk["ts_recv"].append(recv_us)
                    tk["buy"].append(t.buy)
                    tk["sell"].append(t.sell)
                    tk["last"].append(t.last)
                    tk["high"].append(t.high)
                    tk["low"].append(t.low)
                    tk["vol"].append(t.vol)
                    tk["change"].append(t.change or None)
                    tk["day_high"].append(t.dayHigh or None)
                    tk["day_low"].append(t.dayLow or None)
                elif ch.endswith("_deals"):
                    sym = ch[12:-6]
                    times: dict[str, int] = {}
                    for tid, price, amount, hhmmss, side in _deals.decode(push.data):
                        ts = times.get(hhmmss)
                        if ts is None:
                            ts = times[hhmmss] = _deal_time_us(hhmmss, recv_us)
                        dl["symbol"].append(sym)
                        dl["tid"].append(int(tid))
                        dl["price"].append(price)
                        dl["amount"].append(amount)
                        dl["side"].append(_SIDES[side])
                        dl["ts_event"].append(ts)
                        dl["ts_recv"].append(recv_us)
                else:  # acks, pongs: nothing to store
                    continue

    # -- stores ------------------------------------------------------------------------------------

    def flush(self) -> None:
        """Journal (fsync) and commit the rows gathered since the last flush; durable on return."""
        tables = self.cols.tables()
        self.cols = _Columns()
        if not tables:
            return
        for name, table in tables.items():
            self._journal_append(name, table)
        for name, table in tables.items():
            self._sql(name, table)
        self.conn.adbc_connection.commit()  # (the dbapi wrapper still believes it is in autocommit)
        for name, table in tables.items():
            self.rows[name] += table.num_rows

    def _journal_append(self, name: str, table: pa.Table) -> None:
        entry = self._journal.get(name)
        if entry is None:
            f = open(self.journal_dir / f"{name}.arrows", "wb", buffering=0)  # noqa: SIM115 - closed in close()
            entry = self._journal[name] = (f, pa.ipc.new_stream(f, table.schema))
        f, writer = entry
        writer.write_table(table)
        if self.fsync:
            os.fsync(f.fileno())

    def _sql(self, name: str, table: pa.Table) -> None:
        stage = f"stage_{name}"
        if not self.pg:
            table = sqlite_values(table)  # the values SqlStore binds (recorder.storage.sql_bulk)
        mode = "append" if stage in self._staged else "create"
        self.cur.adbc_ingest(stage, table, mode=mode, temporary=True)
        self._staged.add(stage)
        cols = ", ".join(f'"{c}"' for c in table.column_names)
        self.cur.execute(f"INSERT INTO {name} ({cols}) SELECT {cols} FROM {stage} WHERE true "  # noqa: S608
                         "ON CONFLICT DO NOTHING")
        self.cur.execute(f"DELETE FROM {stage}")  # noqa: S608

    def close(self) -> None:
        """Commit, close the journal, and turn the journaled rows into Parquet files."""
        self.flush()
        self.cur.close()
        self.conn.close()
        for name, (f, writer) in self._journal.items():
            writer.close()
            if self.fsync:
                os.fsync(f.fileno())
            f.close()
            with pa.memory_map(str(self.journal_dir / f"{name}.arrows")) as source:
                table = pa.ipc.open_stream(source).read_all()
            _write_parquet(table, self.parquet_root / name, name)
        self._journal = {}


def _write_parquet(table: pa.Table, base: Path, name: str) -> None:
    ds = DATASETS[name]
    table = table.append_column("date", pc.cast(table[ds.date_column], pa.date32()))
    short = [f.name for f in ds.arrow_schema if f.type == pa.string() and f.name not in ("bids", "asks")]
    fmt = pads.ParquetFileFormat()
    opts = fmt.make_write_options(compression="zstd", use_dictionary=short, write_statistics=True)
    pads.write_dataset(
        table, base, format=fmt, file_options=opts,
        partitioning=pads.partitioning(pa.schema([pa.field("date", pa.date32()),
                                                  pa.field(ds.key_column, pa.string())]), flavor="hive"),
        basename_template="part-floor-{i}.parquet", existing_data_behavior="overwrite_or_ignore",
        max_rows_per_group=65_536, max_rows_per_file=0, preserve_order=True,
    )


def run_honest_floor(items: Sequence[tuple[int, bytes | str]], sql_url: str, parquet_root: Path, work: Path,
                     *, batch_frames: int = 5_000, fsync: bool = True) -> dict[str, int]:
    """Run the whole job over ``items`` (``(ts_recv µs, frame)``), a flush every ``batch_frames``.

    Returns the rows stored per dataset.
    """
    floor = HonestFloor(sql_url, parquet_root, work, fsync=fsync)
    for start in range(0, len(items), batch_frames):
        floor.process(items[start:start + batch_frames])
        floor.flush()
    floor.close()
    return floor.rows
