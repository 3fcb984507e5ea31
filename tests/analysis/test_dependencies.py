"""The data-stack versions pyproject.toml declares are the ones this suite runs on.

pandas, pyarrow and DuckDB change their APIs between major versions (DuckDB 2 removed
``DuckDBPyRelation.fetch_df``, ``record_batch`` and ``duckdb.typing``; ``.arrow()`` now returns a
``RecordBatchReader``; pandas 3 made text ``str`` and copy-on-write the default). A fresh install
takes the newest release a requirement allows, so each requirement is bounded to the major
version the suite ran on: widen it only after the suite has passed on the next one.
"""

from __future__ import annotations

import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

PYPROJECT = Path(__file__).parents[2] / "pyproject.toml"
BOUNDED = ("pandas", "pyarrow", "duckdb")


def requirements() -> dict[str, Requirement]:
    project = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]
    parsed = (Requirement(r) for r in project["dependencies"])
    return {r.name.lower(): r for r in parsed}


@pytest.mark.parametrize("name", BOUNDED)
def test_declared_range_is_the_tested_major_version(name: str) -> None:
    requirement = requirements()[name]
    installed = Version(version(name))
    assert requirement.specifier.contains(installed), f"{name} {installed} is outside {requirement}"
    nxt = Version(f"{installed.major + 1}.0")
    assert not requirement.specifier.contains(nxt, prereleases=True), (
        f"{requirement} admits {name} {nxt}, which this suite has not run on"
    )
    previous = Version(f"{installed.major - 1}.99") if installed.major else None
    assert previous is None or not requirement.specifier.contains(previous), (
        f"{requirement} admits {name} {previous}; only {installed.major}.x is tested"
    )


def test_duckdb_api_the_docs_and_analysis_use() -> None:
    """What analysis.duck, the docs snippets and the demo's hints call exists in the tested DuckDB."""
    import duckdb

    relation = duckdb.sql("SELECT 1 AS a, 'x' AS b")
    assert relation.df().to_dict("list") == {"a": [1], "b": ["x"]}
    assert relation.fetchall() == [(1, "x")]
    assert "│" in str(relation)  # print(duckdb.sql(...)) shows a table, as the demo's hint does
    assert duckdb.sqltypes.VARCHAR is not None and duckdb.sqltypes.DATE is not None
    con = duckdb.connect()
    assert con.execute("SELECT ? + 1", [1]).df().iloc[0, 0] == 2
