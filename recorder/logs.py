"""Logging for every command: one handler on stderr, the configured level, UTC timestamps.

A leaf module (it imports only the configuration) so that any subcommand, including
``okex-recorder store`` in :mod:`recorder.storage.consume`, sets logging up the same way
without importing the composition root (:mod:`recorder.app`).
"""

from __future__ import annotations

import logging
import sys
import time

from recorder.config import Config

__all__ = ["setup_logging"]


def setup_logging(config: Config) -> None:
    """One handler on stderr, the configured level, UTC timestamps."""
    logging.basicConfig(
        level=config.log.level.number, stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True,
    )
    logging.Formatter.converter = time.gmtime
    # Libraries log every HTTP request / connection / migration step at INFO: keep them for debug.
    quiet = logging.DEBUG if config.log.level.number <= logging.DEBUG else logging.WARNING
    for name in ("httpx", "httpcore", "websockets", "alembic", "aiohttp.access"):
        logging.getLogger(name).setLevel(quiet)
