"""Shared fixtures. Area fixtures live in ``tests/fixtures/`` and are registered here."""

import gc
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


@pytest.fixture(autouse=True)
def _garbage_collector_as_it_was() -> Iterator[None]:
    """A test that runs ``main(["run", ...])`` in-process applies the ``run`` process's collector
    policy (:func:`recorder.gc_policy.configure`: ``gc.freeze()``, other thresholds) to the test
    process; put the interpreter's settings back so later tests see the defaults."""
    thresholds, frozen = gc.get_threshold(), gc.get_freeze_count()
    yield
    if gc.get_threshold() != thresholds or gc.get_freeze_count() != frozen:
        gc.unfreeze()
        gc.set_threshold(*thresholds)
