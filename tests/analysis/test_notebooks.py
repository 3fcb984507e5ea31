"""Every notebook runs top to bottom against a small synthetic recording written through the storage layer,
and every cell that plots shows its figure as an image (not the text ``<Figure size ...>``)."""

from __future__ import annotations

import base64
import contextlib
import io
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import matplotlib.colors as mcolors
import matplotlib.image as mimage
import nbformat
import numpy as np
import pytest
from nbclient import NotebookClient

from analysis import load
from analysis.recording import ENV_VAR, Recording
from tests.analysis.recording import SYMBOLS, synthetic_records, write_recording

NOTEBOOKS = sorted((Path(__file__).parents[2] / "notebooks").glob("*.ipynb"))
PLOTTING = re.compile(r"plt\.show\(\)|plots\.plot_\w+\(")


@pytest.fixture(scope="module")
def recording_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("recording")
    recording = Recording(directory)
    write_recording([synthetic_records(minutes=3)], recording.sql_url, recording.parquet_root)
    return directory


def decode_png(output: Any) -> np.ndarray:
    """RGB floats in [0, 1], shape (height, width, 3)."""
    image = mimage.imread(io.BytesIO(base64.b64decode(output["data"]["image/png"])), format="png")
    return np.asarray(image)[..., :3]


def pixels_of(image: np.ndarray, color: str, tolerance: float = 0.08) -> int:
    """How many pixels are within ``tolerance`` (per channel) of a named matplotlib colour."""
    target = np.array(mcolors.to_rgb(color))
    return int((np.abs(image - target) < tolerance).all(axis=-1).sum())


def chromatic_pixels(image: np.ndarray) -> int:
    """Pixels with colour (not white, grey or black): data drawn, not axes, ticks or text."""
    return int((image.max(axis=-1) - image.min(axis=-1) > 0.25).sum())


def execute(path: Path) -> nbformat.NotebookNode:
    notebook = nbformat.read(path, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(not cell.get("outputs") for cell in code), "commit notebooks with outputs stripped"
    client = NotebookClient(
        notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    client.execute()
    return notebook


def test_there_are_notebooks() -> None:
    assert {p.name for p in NOTEBOOKS} >= {"market_overview.ipynb", "order_book.ipynb", "account.ipynb"}


def test_the_plotting_cells_are_recognised() -> None:
    """The rule below finds the figures the issue named (mid/spread, depth chart) and the pyplot ones."""
    found = {
        p.stem: [c.source for c in nbformat.read(p, as_version=4).cells
                 if c.cell_type == "code" and PLOTTING.search(c.source)]
        for p in NOTEBOOKS
    }
    assert any("plot_mid_spread" in s for s in found["market_overview"])
    assert any("plot_depth" in s for s in found["order_book"])
    assert len(found["market_overview"]) == 3 and len(found["order_book"]) == 4 and len(found["account"]) == 2


@pytest.mark.notebooks
@pytest.mark.parametrize("mpl_backend", [None, "agg"], ids=["jupyter-default", "MPLBACKEND=agg"])
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_top_to_bottom_and_every_plot_is_an_image(
    path: Path, mpl_backend: str | None, recording_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Headless like Jupyter: no backend chosen (ipykernel's default), or a non-interactive one set by
    the user's environment; either way each plotting cell carries an ``image/png`` with data on it."""
    monkeypatch.setenv(ENV_VAR, str(recording_dir))
    if mpl_backend is None:
        monkeypatch.delenv("MPLBACKEND", raising=False)
    else:
        monkeypatch.setenv("MPLBACKEND", mpl_backend)
    notebook = execute(path)
    cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    outputs = [o for cell in cells for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    warnings = [o.text for o in outputs if o.output_type == "stream" and o.name == "stderr"]
    assert not warnings
    as_text = [o["data"]["text/plain"] for o in outputs
               if "image/png" not in o.get("data", {}) and "text/plain" in o.get("data", {})]
    assert not [t for t in as_text if t.startswith("<Figure size")], "a figure came out as text"

    plotting = [cell for cell in cells if PLOTTING.search(cell.source)]
    assert plotting
    for cell in plotting:
        images = [decode_png(o) for o in cell.outputs if "image/png" in o.get("data", {})]
        assert images, f"no image from the cell:\n{cell.source}"
        for image in images:
            assert chromatic_pixels(image) > 500, f"an image without data from:\n{cell.source}"
        if "plot_mid_spread" in cell.source:
            assert len(images) == len(SYMBOLS)  # one figure per recorded symbol
            for image in images:  # the mid line and the spread line are both drawn
                assert pixels_of(image, "tab:blue") > 300 and pixels_of(image, "tab:orange") > 300
        if "plot_depth" in cell.source:
            (image,) = images
            assert pixels_of(image, "tab:green") > 300 and pixels_of(image, "tab:red") > 300

    if path.stem == "market_overview":  # its counts are those of the SQL store (it reads the Parquet one)
        printed = "".join(o.text for o in outputs if o.output_type == "stream" and o.name == "stdout")
        sql = Recording(recording_dir).sql_url
        top, deals = load.load_book_top(sql), load.load_deals(sql)
        klines = load.load_klines(sql, period="1min")
        assert len(top) and len(deals) and len(klines)
        expected = f"{len(top)} snapshots, {len(deals)} deals, {len(klines)} klines; symbols: {list(SYMBOLS)}"
        assert expected in printed



REPO = Path(__file__).parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.notebooks
@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_notebooks_serves_the_notebooks_against_data(tmp_path: Path) -> None:
    """The documented command, run as written but headless: JupyterLab on loopback, rooted at notebooks/,
    with OKEX_RECORDING_DIR naming ./data of the checkout; asked once for its file list, then stopped."""
    venv = Path(sys.prefix)
    make = ["make", "-s", "--no-print-directory", "-C", str(REPO), f"VENV={venv}",
            "-o", f"{venv}/.installed", "-o", f"{venv}/.notebooks-installed"]  # installed (we run in it)
    dry = subprocess.run([*make, "-n", "notebooks"], capture_output=True, text=True, check=True).stdout
    assert f'OKEX_RECORDING_DIR="{REPO}/data" {venv}/bin/jupyter lab' in dry

    port, token = free_port(), secrets.token_hex(16)
    args = (f"JUPYTER_ARGS=--no-browser --ServerApp.ip=127.0.0.1 --ServerApp.port={port} "
            f"--ServerApp.port_retries=0 --IdentityProvider.token={token}"
            + (" --allow-root" if os.geteuid() == 0 else ""))  # CI containers run as root; JupyterLab refuses
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
           "JUPYTER_CONFIG_DIR": str(tmp_path / "config")}
    server = subprocess.Popen([*make, "notebooks", args], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, start_new_session=True)
    try:
        listing = None
        deadline = time.monotonic() + 90
        with httpx.Client(trust_env=False, timeout=5) as client:
            while listing is None and time.monotonic() < deadline and server.poll() is None:
                try:
                    answer = client.get(f"http://127.0.0.1:{port}/api/contents", params={"token": token})
                except httpx.TransportError:
                    time.sleep(0.2)  # not listening yet: poll again
                    continue
                assert answer.status_code == 200, answer.text
                listing = answer.json()
        assert listing is not None, f"JupyterLab did not answer (exit {server.poll()})"
        names = {entry["name"] for entry in listing["content"]}
        assert names >= {p.name for p in NOTEBOOKS}
        assert listing["content"] and all(entry["path"] == entry["name"] for entry in listing["content"])
    finally:
        with contextlib.suppress(ProcessLookupError):  # the group this test started: make, shell, jupyter
            os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        if server.stdout is not None:
            server.stdout.close()
