"""The recording locator and the shared figures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis import plots
from analysis.recording import ENV_VAR, Recording, default_directory, ensure_recording


def test_default_directory_from_env_or_cwd(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "rec"))
    assert default_directory() == tmp_path / "rec"
    monkeypatch.delenv(ENV_VAR)
    (tmp_path / "notebooks").mkdir()
    monkeypatch.chdir(tmp_path / "notebooks")
    assert default_directory() == tmp_path / "data"
    monkeypatch.chdir(tmp_path)
    assert default_directory() == tmp_path / "data"


def test_existing_recording_is_used_as_is(tmp_path: Path) -> None:
    (tmp_path / "parquet").mkdir()
    (tmp_path / "recording.sqlite").write_bytes(b"")
    recording = ensure_recording(tmp_path)  # would run the demo (and fail here) if it thought it missing
    assert recording == Recording(tmp_path)
    assert recording.sql_url == f"sqlite:///{(tmp_path / 'recording.sqlite').resolve()}"
    assert recording.parquet_root == tmp_path / "parquet"


def test_a_recording_named_by_a_string_is_a_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``Recording("data")`` as docs/analysis.md writes it."""
    monkeypatch.chdir(tmp_path)
    recording = Recording("data")
    assert recording == Recording(Path("data"))
    assert recording.parquet_root == Path("data/parquet")
    assert recording.sql_url == f"sqlite:///{tmp_path.resolve() / 'data' / 'recording.sqlite'}"


def test_mid_spread_figure_draws_the_values() -> None:
    times = pd.to_datetime(["2024-05-01T00:00:00Z", "2024-05-01T00:00:01Z"])
    index = pd.DatetimeIndex(times, name="ts_event")
    top = pd.DataFrame(
        {"symbol": ["btc_usdt"] * 2, "bid_price": [100.0, 101.0], "ask_price": [102.0, 102.0],
         "bid_amount": [1.0, 1.0], "ask_amount": [1.0, 1.0]},
        index=index,
    )
    figure = plots.plot_mid_spread(top, "btc_usdt")
    upper, lower = figure.axes
    np.testing.assert_array_equal(upper.lines[0].get_ydata(), [101.0, 101.5])
    np.testing.assert_allclose(lower.lines[0].get_ydata(), [2 / 101 * 1e4, 1 / 101.5 * 1e4])
