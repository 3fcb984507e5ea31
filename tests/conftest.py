"""Shared fixtures. Area fixtures live in ``tests/fixtures/`` and are registered here."""

pytest_plugins = [
    "tests.fixtures.database",
    "tests.fixtures.s3",
    "tests.fixtures.simulator",
    "tests.fixtures.storage",
]
