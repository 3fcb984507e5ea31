"""Write the notebooks of this directory from the cells below (outputs empty).

Run ``.venv/bin/python notebooks/build_notebooks.py`` after editing; commit the .ipynb files.
Every notebook starts with ``%matplotlib inline``: without it a figure made by
``analysis.plots`` (not through pyplot) is shown as the text ``<Figure size ...>`` until the
first pyplot figure loads the inline backend, in Jupyter and headless alike.
The notebooks stay thin: they load with ``analysis.load``, measure with ``analysis.market``,
``analysis.account`` and ``analysis.quality``, and plot with matplotlib.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).parent

SETUP = """\
%matplotlib inline
import matplotlib.pyplot as plt
import pandas as pd

from analysis import account, load, market, plots, quality
from analysis.recording import ensure_recording

recording = ensure_recording()  # $OKEX_RECORDING_DIR or ./data; runs `okex-recorder demo` if missing
source = recording.parquet_root  # recording.sql_url gives the same frames
print(recording.directory)"""

INTRO = """\
The recording is read from `$OKEX_RECORDING_DIR` (default `./data`, as `okex-recorder demo` writes it);
if it is missing, the demo runs first (about a minute). Every frame has a UTC `DatetimeIndex`."""

MARKET = [
    new_markdown_cell("# Market overview: prices, spreads, volume\n\n" + INTRO),
    new_code_cell(SETUP),
    new_code_cell("""\
top = load.load_book_top(source)
deals = load.load_deals(source)
klines = load.load_klines(source, period="1min")
symbols = sorted(top["symbol"].unique())
print(f"{len(top)} snapshots, {len(deals)} deals, {len(klines)} klines; symbols: {symbols}")
print(f"from {top.index.min()} to {top.index.max()}")"""),
    new_markdown_cell("## Mid price and spread"),
    new_code_cell("""\
for symbol in symbols:
    display(plots.plot_mid_spread(top, symbol))"""),
    new_code_cell("""\
spreads = market.spread(top).assign(symbol=top["symbol"])
spreads.groupby("symbol")["spread_bps"].describe(percentiles=[0.5, 0.9])"""),
    new_markdown_cell("## Volume: bars from deals, checked against the recorded klines"),
    new_code_cell("""\
bars = market.ohlcv(deals, "1min")
fig, axes = plt.subplots(len(symbols), 1, figsize=(8, 2.2 * len(symbols)), sharex=True, squeeze=False)
for ax, (symbol, part) in zip(axes[:, 0], bars.groupby("symbol")):
    ax.bar(part.index, part["volume"], width=pd.Timedelta(seconds=50), align="edge")
    ax.set_ylabel(f"{symbol} volume")
plt.show()"""),
    new_code_cell("""\
check = market.compare_klines(bars, klines)
print(f"{int(check['match'].sum())} of {len(check)} bars match the recorded klines "
      "(a bar that started before the recording shows less volume)")
check[["symbol", "close", "close_kline", "volume", "volume_kline", "match"]].head(10)"""),
    new_markdown_cell("## VWAP, realized volatility, signed trade flow"),
    new_code_cell("""\
summary = market.vwap(deals)
summary["realized_vol"] = [
    market.realized_volatility(market.mid(top[top["symbol"] == s]), "1s") for s in summary.index
]
summary"""),
    new_code_cell("""\
flow = market.signed_trade_flow(deals, "10s")
fig, ax = plt.subplots(figsize=(8, 3))
for symbol, part in flow.groupby("symbol"):
    ax.plot(part.index, part["cumulative_net"], label=symbol)
ax.set_ylabel("cumulative buy - sell (base)")
ax.legend()
plt.show()"""),
    new_markdown_cell("## Data quality: gaps, latency, snapshot cadence"),
    new_code_cell("""\
events = load.load_feed_events(source)
quality.coverage(events, symbols, top.index.min(), top.index.max())"""),
    new_code_cell("""\
quality.latency_summary(top).join(quality.snapshot_cadence(top))"""),
]

BOOK = [
    new_markdown_cell("# Order book: depth, imbalance, liquidity\n\n" + INTRO),
    new_code_cell(SETUP),
    new_code_cell("""\
top = load.load_book_top(source)
symbol = sorted(top["symbol"].unique())[0]
top = top[top["symbol"] == symbol]
levels = load.load_book_levels(source, symbol, depth=20)
print(symbol, len(top), "snapshots,", len(levels), "levels")"""),
    new_markdown_cell("## Depth chart of the last snapshot"),
    new_code_cell("""\
last = levels[levels["ts_recv"] == levels["ts_recv"].max()]
plots.plot_depth(last, f"{symbol} at {last.index[0]:%H:%M:%S} UTC")"""),
    new_code_cell("""\
depth = market.depth_within(levels, 10)
fig, ax = plt.subplots(figsize=(8, 3))
ax.plot(depth.index, depth["bid_depth"], label="bids within 10 bps", color="tab:green")
ax.plot(depth.index, depth["ask_depth"], label="asks within 10 bps", color="tab:red")
ax.set_ylabel("size (base)")
ax.legend()
plt.show()"""),
    new_markdown_cell("## Does the top-5 imbalance predict the next mid move (1 s ahead)?"),
    new_code_cell("""\
imb = market.imbalance(levels, 5).reset_index()
nxt = top.assign(next_move=market.next_mid_change(top, "1s")).reset_index()
joined = imb.merge(nxt[["ts_event", "ts_recv", "next_move"]], on=["ts_event", "ts_recv"]).dropna()
joined["bucket"] = pd.qcut(joined["imbalance"], 5, duplicates="drop")
print(f"correlation: {joined['imbalance'].corr(joined['next_move']):.3f} over {len(joined)} snapshots")
fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.5))
left.scatter(joined["imbalance"], joined["next_move"], s=4, alpha=0.4)
left.set_xlabel("top-5 imbalance")
left.set_ylabel("next mid move (quote)")
joined.groupby("bucket", observed=True)["next_move"].mean().plot.bar(ax=right)
right.set_ylabel("mean next move")
plt.show()"""),
    new_markdown_cell("## Heat map of resting liquidity"),
    new_code_cell("""\
mids = market.mid(top)
step = float(mids.median()) * 2e-4  # 2 bps price bins
grid = market.liquidity_grid(levels, step, "5s")
fig, ax = plt.subplots(figsize=(9, 4))
mesh = ax.pcolormesh(grid.index, grid.columns, grid.T.to_numpy(), shading="nearest", cmap="viridis")
ax.plot(mids.index, mids, color="white", lw=0.8, label="mid")
fig.colorbar(mesh, ax=ax, label="mean resting size (base)")
ax.set_ylabel("price")
ax.legend(loc="upper left")
plt.show()"""),
]

ACCOUNT = [
    new_markdown_cell("# Account: balances, order fills, slippage\n\n" + INTRO),
    new_code_cell(SETUP),
    new_code_cell("""\
balances = load.load_balances(source)
tickers = load.load_tickers(source)
valued = account.value_balances(balances, tickers, quote="usdt")
print(len(balances), "balance rows;", sorted(balances["currency"].unique()))
valued.tail()"""),
    new_markdown_cell("## Balances over time, valued in USDT at the recorded mid"),
    new_code_cell("""\
fig, (upper, lower) = plt.subplots(2, 1, figsize=(8, 5), sharex=True)
for currency, part in valued.groupby("currency"):
    upper.plot(part.index, part["value"], label=currency)
upper.set_ylabel("value (USDT)")
upper.legend()
lower.plot(account.portfolio_value(valued), color="black")
lower.set_ylabel("account value (USDT)")
plt.show()"""),
    new_markdown_cell("## Order fills and slippage against the mid at creation"),
    new_code_cell("""\
orders = load.load_orders(source)
changes = load.load_order_status_changes(source)
top = load.load_book_top(source)
fills = account.order_fills(orders, changes, top)
fills[["order_id", "symbol", "type", "status", "fill_ratio", "time_to_fill", "slippage_bps"]].head(10)"""),
    new_code_cell("""\
if fills.empty:
    print("no orders in this recording")
else:
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.5))
    fills["fill_ratio"].plot.hist(ax=left, bins=10, range=(0, 1))
    left.set_xlabel("fill ratio")
    fills["slippage_bps"].dropna().plot.hist(ax=right, bins=20)
    right.set_xlabel("slippage (bps, + = cost)")
    plt.show()"""),
    new_markdown_cell("## Realised P&L (FIFO)"),
    new_code_cell("""\
pnl = account.realised_pnl(orders, "fifo")
print(pnl.groupby("symbol")["realised"].sum() if len(pnl) else "no sells with known cost")
pnl.tail()"""),
]


def write(name: str, cells: list) -> None:
    notebook = new_notebook(
        cells=cells,
        metadata={
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        },
    )
    for index, cell in enumerate(notebook.cells):
        cell["id"] = f"{name.replace('_', '-')}-{index}"
    nbformat.validate(notebook)
    nbformat.write(notebook, HERE / f"{name}.ipynb")


if __name__ == "__main__":
    write("market_overview", MARKET)
    write("order_book", BOOK)
    write("account", ACCOUNT)
