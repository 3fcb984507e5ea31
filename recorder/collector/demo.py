"""``okex-recorder demo``: the simulator, a minute of recording into ``./data``, and a summary.

Starts the local exchange simulator in this process (its own thread and loop),
upgrades the SQLite schema under the data directory, records several symbols
(ticker, incremental depth -> top-20 snapshots, deals, 1-minute klines) over
WebSocket and polls the simulator's demo account over signed REST, then prints
what this run recorded (rows per table: produced, written to each store, in SQL) and
what the recording in the data directory now holds (every run into it), the gaps of
this run, the message rate, and how to query the data. Each run gets a new market
seed (printed; ``--seed`` repeats one), so a second run into the same directory adds
new trades and orders instead of repeating the first run's ids. Ctrl-C stops early
and still prints the summary.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import secrets
import shlex
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from recorder.app import open_storage, record, setup_logging
from recorder.config import Config, load_config, venue_settings
from recorder.errors import ConfigError

__all__ = ["add_arguments", "demo_config", "run", "summarise"]

log = logging.getLogger("recorder.collector")

_SQLITE_EXAMPLE = "SELECT symbol, count(*), min(ts_event), max(ts_event) FROM tickers GROUP BY symbol"
_DUCKDB_EXAMPLE = ("SELECT symbol, count(*) FROM read_parquet('{root}/deals/**/*.parquet', "
                   "hive_partitioning=true) GROUP BY symbol")
_SYMBOL_TABLES = ("tickers", "book_snapshots", "deals", "klines", "orders")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``demo [--duration 60] [--data-dir ./data] [--rate 20] [--seed N]``."""
    parser.add_argument("--duration", type=float, default=60.0, metavar="S",
                        help="seconds to record (default 60)")
    parser.add_argument("--data-dir", type=Path, default=Path("data"), metavar="DIR",
                        help="where the SQLite file, Parquet datasets and status.json go (default ./data)")
    parser.add_argument("--rate", type=float, default=20.0,
                        help="market updates per second per symbol in the simulator (default 20)")
    parser.add_argument("--seed", type=int, default=None,
                        help="the simulator's market seed (default: a new one per run, printed, so a "
                             "second run into the same directory records new trades and orders)")


def demo_config(data_dir: Path, ws_url: str, rest_url: str, symbols: tuple[str, ...],
                v5: dict[str, Any] | None = None) -> Config:  # fmt: skip
    """The demo's configuration: everything under ``data_dir``, the simulator as the exchange.

    ``v5``: the ``[venues.okx_v5]`` table (the v5 simulator's URLs and instruments) to record OKX v5
    beside OKEx v1, or None for v1 only.
    """
    venues = {"okx_v5": v5} if v5 is not None else {}
    return load_config(env={}, overrides={
        "venues": venues,
        "exchange": {"ws_url": ws_url, "rest_url": rest_url},
        "collector": {"symbols": list(symbols), "channels": ["ticker", "depth", "deals", "kline_1min"],
                      "status_file": str(data_dir / "status.json"), "status_interval": 10.0,
                      "book_audit_interval": 30.0},  # the simulator serves depth.do: audit the books
        "storage": {"sql_url": f"sqlite:///{data_dir / 'recording.sqlite'}",
                    "parquet_root": str(data_dir / "parquet"), "spill_dir": str(data_dir / "spill"),
                    "parquet_journal_dir": str(data_dir / "parquet-journal")},
        "poller": {"symbols": list(symbols), "balance_interval": 5.0, "order_interval": 5.0},
    })


def run(args: argparse.Namespace) -> int:
    """Run the demo; exit 0 with a summary (1 if it recorded nothing)."""
    from recorder.app import check_duration, claim_storage, prepare_directories
    from recorder.collector.status import row_counts
    from recorder.credentials import Credentials
    from recorder.simulator import SimulatorThread
    from recorder.simulator.okx_v5 import SimulatorThread as V5SimulatorThread
    from recorder.simulator.okx_v5 import V5Settings
    from recorder.simulator.settings import DEMO_API_KEY, DEMO_SECRET, SimulatorSettings
    from recorder.storage import migrate

    check_duration(args.duration, unset="record 60 s")
    if not 0 < args.rate < math.inf:
        raise ConfigError(f"--rate must be a finite number > 0, got {args.rate:g}")
    seed = args.seed if args.seed is not None else secrets.randbelow(1_000_000_000)
    data_dir: Path = args.data_dir
    settings = SimulatorSettings(seed=seed, updates_per_second=args.rate, account_activity_interval=2.0,
                                 truth_memory=0)
    v5_settings = V5Settings(seed=seed, updates_per_second=args.rate, truth_memory=0)
    with_v5 = _storage_takes(v5_settings.instruments[0])
    with SimulatorThread(settings) as sim, V5SimulatorThread(v5_settings) as v5sim:
        v5_table = {"public_url": v5sim.public_url, "business_url": v5sim.business_url,
                    "private_url": v5sim.private_url, "rest_url": v5sim.rest_url,
                    "instruments": list(v5_settings.instruments),
                    "channels": ["tickers", "books", "trades"], "candle_bars": ["1m"]}  # fmt: skip
        config = demo_config(data_dir, sim.ws_url, sim.rest_url, settings.symbols,
                             v5_table if with_v5 else None)
        setup_logging(config)
        if not with_v5:
            print("okex-recorder demo: okx_v5 is not recorded: this storage refuses its instrument ids "
                  f"({v5_settings.instruments[0]}; the venue-keyed storage accepts them)")
        print(f"okex-recorder demo: OKEx v1 simulator at {sim.ws_url} and {sim.rest_url}, OKX v5 simulator "
              f"at {v5sim.rest_url} (seed {seed}); recording {len(settings.symbols)} okex_v1 symbols and "
              f"{len(v5_settings.instruments)} okx_v5 instruments for {args.duration:g} s into {data_dir}/")
        prepare_directories(config)
        with claim_storage(config, fix=f"another demo or run is recording into {data_dir}/; wait for it to "
                                       "finish, or give this demo another --data-dir"):
            migrate.upgrade(config.storage.sql_url)
            before = row_counts(config.storage.sql_url)
            if any(before.values()):
                print(f"okex-recorder demo: {data_dir}/ already holds {sum(before.values())} rows from "
                      "earlier runs; this run adds to them (delete the directory to start afresh)")
            writer = open_storage(config)
            creds = Credentials(DEMO_API_KEY, DEMO_SECRET)
            result = asyncio.run(record(config, duration=args.duration, writer=writer, credentials=creds,
                                        rest_url=sim.rest_url))
    print(summarise(config, result.status, data_dir, seed=seed, before=before))
    return result.exit_code


def _storage_takes(symbol: str) -> bool:
    """Whether storage's symbol rule accepts ``symbol`` (v5 ids are upper case: the storage before the
    venue-keyed datasets refuses them)."""
    from recorder.errors import SymbolError
    from recorder.storage.keys import check_symbol

    try:
        check_symbol(symbol)
    except SymbolError:
        return False
    return True


def _venue_of(symbol: str) -> str:
    """The venue of a stored symbol where storage has no ``venue`` column yet: v5 ids are upper case."""
    return "okx_v5" if symbol != symbol.lower() else "okex_v1"


def _python() -> str:
    """This interpreter as a user can type it: ``.venv/bin/python`` below the current directory, else
    its absolute path (a bare ``python`` outside the venv has neither pandas nor duckdb)."""
    executable = Path(sys.executable).absolute()
    try:
        return shlex.quote(str(executable.relative_to(Path.cwd().absolute())))
    except ValueError:
        return shlex.quote(str(executable))


def _okex_recorder() -> str:
    """The ``okex-recorder`` script beside this interpreter as a user can type it (``.venv/bin/okex-recorder``
    after ``make demo``: the venv is not active there); a bare ``okex-recorder`` when there is none."""
    script = Path(sys.executable).absolute().parent / "okex-recorder"
    if not script.is_file():
        return "okex-recorder"
    try:
        return shlex.quote(str(script.relative_to(Path.cwd().absolute())))
    except ValueError:
        return shlex.quote(str(script))


def summarise(config: Config, status: dict[str, Any], data_dir: Path, *, seed: int | None = None,
              before: dict[str, int] | None = None) -> str:
    """The demo's closing report: this run (rows per table: produced, written, added to SQL, in SQL), what the
    recording in ``data_dir`` now holds (SQL rows per table and symbol, every run into it), gaps, rate,
    where the data is and how to query it. ``before``: SQL rows per table before this run."""
    import sqlalchemy as sa

    from recorder.collector.status import row_counts, rows_table
    from recorder.storage import schema

    after = row_counts(config.storage.sql_url)
    before = before or {}
    earlier = sum(before.values())
    elapsed = status["elapsed_seconds"]
    lines = ["", f"== this run: {elapsed:.0f} s"
             + ("" if seed is None else f", simulator seed {seed} (--seed {seed} repeats its market)")
             + " =="]
    lines.append("venues: " + "; ".join(f"{venue.name} ({', '.join(venue.symbols(settings))})"
                                        for venue, settings in venue_settings(config)))  # fmt: skip
    lines += rows_table(status, after, {t: after.get(t, 0) - before.get(t, 0) for t in after})
    lines.append("")
    if earlier:
        lines.append(f"== the recording in {data_dir}/ now holds: this run plus {earlier} rows from earlier "
                     "runs (SQL rows per table and symbol) ==")
    else:
        lines.append(f"== the recording in {data_dir}/ now holds: this run only "
                     "(SQL rows per table and symbol) ==")
    engine = sa.create_engine(config.storage.sql_url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            for table in schema.metadata.sorted_tables:
                total = after.get(table.name, 0)
                lines.append(f"{table.name:22} {total:8d} rows")
                if table.name in _SYMBOL_TABLES and "symbol" in table.c and total:
                    sym = table.c.symbol
                    if "venue" in table.c:  # per venue and symbol (the venue's own ids)
                        qv = sa.select(table.c.venue, sym, sa.func.count()).group_by(table.c.venue, sym)
                        for venue, symbol, n in conn.execute(qv.order_by(table.c.venue, sym)):
                            lines.append(f"    {venue:8} {symbol:18} {n:8d}")
                        continue
                    q = sa.select(sym, sa.func.count()).group_by(sym).order_by(sym)
                    for symbol, n in conn.execute(q):
                        lines.append(f"    {_venue_of(symbol):8} {symbol:18} {n:8d}")
            fe = schema.metadata.tables["feed_events"]
            gap_kinds = ("disconnected", "stall", "book_reset", "resubscribed", "subscribe_refused", "ban",
                         "store_outage", "sequence_break", "checksum_mismatch", "planned_disconnect")
            started = datetime.fromisoformat(status["started_at"])
            gaps = conn.execute(
                sa.select(fe.c.kind, fe.c.ts_start, fe.c.ts_end, fe.c.connection, fe.c.detail)
                .where(fe.c.kind.in_(gap_kinds), fe.c.ts_start >= started).order_by(fe.c.ts_start)
            ).all()
    finally:
        engine.dispose()
    lines.append("")
    lines.append(f"== gaps in this run: {len(gaps)} ==")
    for kind, start, end, connection, detail in gaps[:20]:
        lines.append(f"  {kind} on {connection} from {start} to {end or 'still open'}: {detail}")
    frames = status["frames"]
    status_file = data_dir / "status.json"
    lines += [
        "",
        "== rate (this run) ==",
        f"  {frames['received']} frames in {elapsed:.0f} s = {status['rates']['frames_per_second_avg']} "
        f"messages/s; {frames['malformed']} malformed, {frames['dropped_backpressure']} dropped; "
        f"receive->durable lag p99 {status['lag_seconds']['p99'] or 0:.3f} s",
        "",
        "== where the data is ==",
        f"  SQLite:  {data_dir / 'recording.sqlite'}",
        f"  Parquet: {data_dir / 'parquet'}/<table>/venue=<venue>/date=YYYY-MM-DD/symbol=<symbol>/*.parquet",
        f"  status:  {status_file}  ({_okex_recorder()} status --status-file {status_file})",
        "",
        "== query it ==",
        f"  sqlite3 {data_dir / 'recording.sqlite'} \"{_SQLITE_EXAMPLE}\"",
        f"  {_python()} -c \"import pandas as pd; "
        f"print(pd.read_parquet('{data_dir / 'parquet' / 'book_snapshots'}').head())\"",
        f"  {_python()} -c \"import duckdb; print(duckdb.sql(\\\""
        + _DUCKDB_EXAMPLE.format(root=data_dir / "parquet") + "\\\"))\"",
    ]
    return "\n".join(lines)
