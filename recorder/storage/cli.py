"""Database migrations command (not built yet)."""

from __future__ import annotations

import argparse

from recorder.errors import RecorderError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """No options yet."""


def run(args: argparse.Namespace) -> int:
    raise RecorderError("'db' is not implemented yet")
