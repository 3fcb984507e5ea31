"""Shared fixtures. Area fixtures live in ``tests/fixtures/`` and are registered here."""

import logging
from collections.abc import Iterator

import pytest

pytest_plugins = [
    "tests.fixtures.database",
    "tests.fixtures.s3",
    "tests.fixtures.simulator",
    "tests.fixtures.storage",
]


@pytest.fixture(autouse=True)
def _root_logging_as_it_was() -> Iterator[None]:
    """A test that runs a command in-process (``main([...])``) leaves ``setup_logging``'s stderr
    handler on the root logger, bound to that test's captured (then closed) stream: a later
    test's command that logs before configuring logging would print "--- Logging error ---".
    It also sets library loggers' levels (``alembic`` at DEBUG for a debug config). Put the root
    logger and every logger's level back as they were."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    levels = {name: lg.level for name, lg in logging.root.manager.loggerDict.items()
              if isinstance(lg, logging.Logger)}
    yield
    for handler in list(root.handlers):
        if handler not in handlers and type(handler) is logging.StreamHandler:
            root.removeHandler(handler)
    root.setLevel(level)
    for name, lg in list(logging.root.manager.loggerDict.items()):
        if isinstance(lg, logging.Logger) and lg.level != levels.get(name, logging.NOTSET):
            lg.setLevel(levels.get(name, logging.NOTSET))
