"""Draw docs/img/demo_mid_spread.png from a recording (default: ./data, made by `okex-recorder demo`).

    .venv/bin/python notebooks/make_readme_image.py [RECORDING_DIR] [SYMBOL]
"""

from __future__ import annotations

import sys
from pathlib import Path

from analysis import load, plots
from analysis.recording import ensure_recording

directory = sys.argv[1] if len(sys.argv) > 1 else None
symbol = sys.argv[2] if len(sys.argv) > 2 else "btc_usdt"
recording = ensure_recording(directory)
top = load.load_book_top(recording.parquet_root, symbol)
figure = plots.plot_mid_spread(top, symbol, resample="1s")
target = Path(__file__).parents[1] / "docs" / "img" / "demo_mid_spread.png"
figure.savefig(target, dpi=80)
print(target)
