"""Small matplotlib figures shared by the notebooks and the README image.

Each function takes loader frames, draws on new axes and returns the
:class:`matplotlib.figure.Figure`; nothing is shown or saved here.
"""

from __future__ import annotations

import matplotlib.dates as mdates
import pandas as pd
from matplotlib.figure import Figure

from analysis.market import mid, spread

__all__ = ["plot_depth", "plot_mid_spread"]


def plot_mid_spread(top: pd.DataFrame, symbol: str, resample: str | None = "1s") -> Figure:
    """Mid price (top panel) and quoted spread in bps (bottom panel) of one symbol over time.

    ``top`` is a :func:`analysis.load.load_book_top` frame; ``resample`` (a pandas
    frequency or None) takes the last value per bin to keep long recordings light.
    Times are shown in UTC.
    """
    rows = top[top["symbol"] == symbol]
    values = pd.DataFrame({"mid": mid(rows), "spread_bps": spread(rows)["spread_bps"]})
    if resample is not None:
        values = values.resample(resample).last().dropna(how="all")
    figure = Figure(figsize=(8, 4.5), layout="constrained")
    upper, lower = figure.subplots(2, 1, sharex=True, height_ratios=[2, 1])
    upper.plot(values.index, values["mid"], lw=1, color="tab:blue")
    upper.set_ylabel("mid")
    upper.set_title(f"{symbol}: mid price and spread")
    lower.plot(values.index, values["spread_bps"], lw=0.8, color="tab:orange")
    lower.set_ylabel("spread (bps)")
    lower.set_xlabel("time (UTC)")
    lower.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S", tz="UTC"))
    for ax in (upper, lower):
        ax.grid(alpha=0.3)
    return figure


def plot_depth(levels: pd.DataFrame, title: str = "") -> Figure:
    """Depth chart of one snapshot: cumulative size against price, bids left, asks right.

    ``levels`` holds the rows of a single snapshot of :func:`analysis.load.load_book_levels`.
    """
    figure = Figure(figsize=(7, 4), layout="constrained")
    ax = figure.subplots()
    for side, color in (("bid", "tab:green"), ("ask", "tab:red")):
        rows = levels[levels["side"] == side].sort_values("level")
        ax.step(rows["price"], rows["amount"].cumsum(), where="post", color=color, label=f"{side}s")
        ax.fill_between(rows["price"], rows["amount"].cumsum(), step="post", color=color, alpha=0.2)
    ax.set_xlabel("price")
    ax.set_ylabel("cumulative size")
    ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    return figure
