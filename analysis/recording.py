"""Where a recording lives, and making the demo's recording when there is none.

A recording directory holds ``recording.sqlite`` (the SQL store) and ``parquet/`` (the
Parquet datasets), as ``okex-recorder demo --data-dir DIR`` writes them. The notebooks
use :func:`ensure_recording` with the directory named by ``OKEX_RECORDING_DIR``
(default ``./data``; from inside ``notebooks/``, ``../data``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ENV_VAR", "Recording", "default_directory", "ensure_recording"]

ENV_VAR = "OKEX_RECORDING_DIR"


@dataclass(frozen=True, slots=True)
class Recording:
    """The two stores of one recording directory: pass either to the loaders.

    ``directory`` may be given as a ``str`` (``Recording("data")``); it is kept as a :class:`Path`.
    """

    directory: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "directory", Path(self.directory))

    @property
    def sqlite_path(self) -> Path:
        return self.directory / "recording.sqlite"

    @property
    def sql_url(self) -> str:
        """``sqlite:///<directory>/recording.sqlite`` (absolute)."""
        return f"sqlite:///{self.sqlite_path.resolve()}"

    @property
    def parquet_root(self) -> Path:
        return self.directory / "parquet"

    def exists(self) -> bool:
        """Both stores are present."""
        return self.sqlite_path.is_file() and self.parquet_root.is_dir()


def default_directory() -> Path:
    """``$OKEX_RECORDING_DIR``, else ``./data`` (``../data`` when run from ``notebooks/``)."""
    named = os.environ.get(ENV_VAR)
    if named:
        return Path(named)
    here = Path.cwd()
    return here.parent / "data" if here.name == "notebooks" else here / "data"


def _demo_command() -> list[str]:
    beside = Path(sys.executable).with_name("okex-recorder")
    if beside.exists():
        return [str(beside)]
    found = shutil.which("okex-recorder")
    return [found] if found else [sys.executable, "-m", "recorder.cli"]


def ensure_recording(directory: str | Path | None = None, duration: float = 60.0) -> Recording:
    """The recording in ``directory`` (default :func:`default_directory`), made first if missing.

    When either store is missing, runs ``okex-recorder demo --data-dir <directory>
    --duration <duration>`` (the local simulator; about ``duration`` seconds) and
    raises :class:`subprocess.CalledProcessError` if it fails.
    """
    recording = Recording(Path(directory) if directory is not None else default_directory())
    if not recording.exists():
        arguments = ["demo", "--data-dir", str(recording.directory), "--duration", str(duration)]
        subprocess.run([*_demo_command(), *arguments], check=True)  # our own entry point, no shell
    return recording
