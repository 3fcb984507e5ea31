"""Every shell and Python snippet of README.md and docs/ runs as written after ``make demo``.

The convention (README "Documentation snippets"): fenced blocks tagged ``bash``, ``sh``, ``shell`` or
``python`` are executed, in a directory laid out like a checkout after ``make demo``: ``./data`` holds
a short demo recording (one for the whole module), ``.venv`` is the virtual environment these tests
run in, ``config.example.toml`` is there, and the environment is that of an activated venv (its
``bin/`` first on ``PATH``). Shell blocks run under ``bash -euo pipefail`` (an undefined variable or
a failing command fails the snippet), Python blocks as a script; each must exit 0 and print something.

Other tags (``text``, ``toml``, ``sql``, ``console``, ...) are not run; every fence has a tag. The line
right before a runnable fence may hold

* ``<!-- snippet: skip — reason -->``: not run (the reason is required and shown as the skip reason);
* ``<!-- snippet: postgres -->``: run with a PostgreSQL database holding the demo recording (needs
  ``OKEX_TEST_PG_URL``): ``$OKEX_SQL_URL`` is its SQLAlchemy URL (``postgresql+psycopg://...``, what
  the recorder reads) and ``$DATABASE_URL`` its libpq URL (``postgresql://...``, what ``psql`` takes).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa

from recorder.storage import schema
from recorder.storage.migrate import upgrade

REPO = Path(__file__).parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
RUNNABLE = frozenset({"bash", "sh", "shell", "python"})
FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
MARKER = re.compile(r"^<!--\s*snippet:\s*(?P<kind>[\w-]+)\s*(?:[—–-]+\s*(?P<reason>.*?))?\s*-->$")
MARKER_START = re.compile(r"^\s*<!--\s*snippet\b")  # a marker is a line of its own; prose may quote one
DEMO_SECONDS = 8.0
SNIPPET_TIMEOUT = 60.0
TOOLS = ("sqlite3", "psql")  # executables some snippets call that are not in the venv


@dataclass(frozen=True, slots=True)
class Snippet:
    """One fenced block: where it is, its tag, its text and the marker on the line before it."""

    path: Path
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    marker: str | None = None
    reason: str = ""

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.line}"


def closes(line: str, fence: str) -> bool:
    """``line`` closes a block opened by ``fence``: the same character, at least as many, nothing else."""
    text = line.strip()
    return text.startswith(fence) and not text.strip(fence[0])


def parse(path: Path) -> tuple[list[Snippet], list[str]]:
    """The fenced blocks of one Markdown file, and the problems found (bad or misplaced markers,
    untagged or unclosed fences)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    snippets: list[Snippet] = []
    problems: list[str] = []
    used_markers: set[int] = set()
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        fence, lang = opening["fence"], opening["info"].strip().split(" ")[0].lower()
        end = next((j for j in range(i + 1, len(lines)) if closes(lines[j], fence)), None)
        where = f"{path.relative_to(REPO)}:{i + 1}"
        if end is None:
            problems.append(f"{where}: fence never closed")
            break
        marker = reason = None
        previous = lines[i - 1].strip() if i else ""
        if MARKER_START.match(previous):
            used_markers.add(i - 1)
            found = MARKER.match(previous)
            if not found or found["kind"] not in {"skip", "postgres"}:
                problems.append(f"{where}: unknown snippet marker {previous!r} (skip — reason, or postgres)")
            else:
                marker, reason = found["kind"], (found["reason"] or "").strip()
                if marker == "skip" and not reason:
                    problems.append(f"{where}: a skipped snippet needs a reason (snippet: skip — why)")
                if lang not in RUNNABLE:
                    problems.append(f"{where}: a snippet marker on a {lang or 'untagged'} block (never runs)")
        if not lang:
            problems.append(f"{where}: untagged fence: tag it (bash, sh, shell, python run; text, sql not)")
        code = "\n".join(line[len(opening["indent"]):] for line in lines[i + 1:end]) + "\n"
        snippets.append(Snippet(path, i + 1, lang, code, marker, reason or ""))
        i = end + 1
    for n, line in enumerate(lines):
        if MARKER_START.match(line) and n not in used_markers:
            where = f"{path.relative_to(REPO)}:{n + 1}"
            problems.append(f"{where}: snippet marker not on the line right before a fence")
    return snippets, problems


def all_snippets() -> list[Snippet]:
    return [s for path in DOCS for s in parse(path)[0] if s.lang in RUNNABLE]


SNIPPETS = all_snippets()


# ---------------------------------------------------------------------------------------------------- parser


def test_the_convention_is_followed_in_every_doc() -> None:
    problems = [p for path in DOCS for p in parse(path)[1]]
    assert not problems, "\n".join(problems)


def test_the_parser_reads_markers_fences_and_problems(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    doc = tmp_path / "x.md"
    doc.write_text(
        "<!-- snippet: skip — needs the internet -->\n```sh\ncurl x\n```\n\n"
        "<!-- snippet: postgres -->\n```bash\npsql \"$DATABASE_URL\" -c 'select 1'\n```\n"
        "```python\n    print(1)\n```\n"
        "<!-- snippet: skip -->\n```sh\necho\n```\n"
        "<!-- snippet: skipp — typo -->\n```sh\necho\n```\n"
        "<!-- snippet: skip — on text -->\n```text\nhello\n```\n"
        "<!-- snippet: postgres -->\n\n```sh\necho\n```\n"
        "````\nuntagged, with ``` inside\n````\n"
    )
    snippets, problems = parse(doc)
    assert [(s.line, s.lang, s.marker, s.reason) for s in snippets] == [
        (2, "sh", "skip", "needs the internet"), (7, "bash", "postgres", ""), (10, "python", None, ""),
        (14, "sh", "skip", ""), (18, "sh", None, ""), (22, "text", "skip", "on text"), (27, "sh", None, ""),
        (30, "", None, ""),
    ]
    assert snippets[2].code == "    print(1)\n"
    assert [p.split(": ", 1)[0] for p in problems] == ["x.md:14", "x.md:18", "x.md:22", "x.md:30", "x.md:25"]


def test_every_runnable_snippet_is_run_or_skipped_with_a_reason() -> None:
    assert len(SNIPPETS) >= 10
    run = [s for s in SNIPPETS if s.marker != "skip"]
    assert len(run) >= len(SNIPPETS) // 2, "most snippets run"
    for path in (REPO / "README.md", REPO / "docs" / "analysis.md"):
        assert any(s.path == path and s.marker == "postgres" for s in SNIPPETS), path


# ---------------------------------------------------------------------------------------------------- running


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """A directory like a checkout after ``make demo`` (a short one), and what the demo printed."""
    directory = tmp_path_factory.mktemp("checkout")
    (directory / ".venv").symlink_to(Path(sys.prefix), target_is_directory=True)
    shutil.copy(REPO / "config.example.toml", directory)
    demo = subprocess.run(
        [str(directory / ".venv" / "bin" / "okex-recorder"), "demo", "--duration", str(DEMO_SECONDS)],
        cwd=directory, env=venv_env(directory), capture_output=True, text=True, timeout=180,
        stdin=subprocess.DEVNULL,
    )
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert (directory / "data" / "recording.sqlite").is_file()
    yield directory, demo.stdout


def venv_env(directory: Path, **extra: str) -> dict[str, str]:
    """The environment of a shell that ran ``source .venv/bin/activate`` in ``directory``."""
    env = {k: v for k, v in os.environ.items() if k not in ("OKEX_SQL_URL", "DATABASE_URL", "PYTHONHOME")}
    env["VIRTUAL_ENV"] = str(directory / ".venv")
    env["PATH"] = f"{directory / '.venv' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def postgres_recording(checkout: tuple[Path, str]) -> Iterator[dict[str, str]]:
    """A fresh PostgreSQL database holding the demo recording (copied row for row from SQLite)."""
    base = os.environ.get("OKEX_TEST_PG_URL")
    if not base:
        pytest.skip("PostgreSQL snippets need OKEX_TEST_PG_URL (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test)")
    name = f"okex_docs_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.make_url(base).set(database=name)
    try:
        upgrade(url)
        source = sa.create_engine(f"sqlite:///{checkout[0] / 'data' / 'recording.sqlite'}",
                                  poolclass=sa.pool.NullPool)
        target = sa.create_engine(url, poolclass=sa.pool.NullPool)
        with source.connect() as read, target.begin() as write:
            for table in schema.metadata.sorted_tables:
                rows = [dict(r._mapping) for r in read.execute(table.select())]
                if rows:
                    write.execute(table.insert(), rows)
        source.dispose()
        target.dispose()
        sqlalchemy_url = url.render_as_string(hide_password=False)
        yield {"OKEX_SQL_URL": sqlalchemy_url,
               "DATABASE_URL": url.set(drivername="postgresql").render_as_string(hide_password=False)}
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def run_snippet(
    snippet: Snippet, directory: Path, env: dict[str, str], scratch: Path
) -> subprocess.CompletedProcess[str]:
    if snippet.lang == "python":
        script = scratch / "snippet.py"
        script.write_text(snippet.code, encoding="utf-8")
        command = ["python", str(script)]
        env = {**env, "PYTHONWARNINGS": "error::FutureWarning,error::DeprecationWarning:__main__"}
    else:
        command = ["bash", "-euo", "pipefail", "-c", snippet.code]
    executable = shutil.which(command[0], path=env["PATH"])
    assert executable is not None
    return subprocess.run([executable, *command[1:]], cwd=directory, env=env, capture_output=True, text=True,
                          timeout=SNIPPET_TIMEOUT, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("snippet", SNIPPETS, ids=[s.id for s in SNIPPETS])
def test_snippet_runs_as_written(
    snippet: Snippet, checkout: tuple[Path, str], request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    if snippet.marker == "skip":
        pytest.skip(f"{snippet.id}: {snippet.reason}")
    directory = checkout[0]
    env = venv_env(directory)
    if snippet.marker == "postgres":
        env.update(request.getfixturevalue("postgres_recording"))
    if snippet.lang != "python":
        for tool in TOOLS:
            if re.search(rf"(^|[\s;|&(]){tool}\s", snippet.code) and shutil.which(tool) is None:
                pytest.skip(f"{snippet.id}: the {tool} command-line client is not installed")
    done = run_snippet(snippet, directory, env, tmp_path)
    report = (f"{snippet.id} ({snippet.lang}) exit {done.returncode}\n{snippet.code}"
              f"\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}")
    assert done.returncode == 0, report
    assert done.stdout.strip(), f"prints nothing: {report}"
    assert "Traceback" not in done.stderr, report


def test_the_demo_hints_run_outside_the_venv(checkout: tuple[Path, str], tmp_path: Path) -> None:
    """The demo's closing "query it" commands work pasted into a shell where no venv is active."""
    directory, printed = checkout
    hints = printed.split("== query it ==", 1)[1].strip().splitlines()
    assert len(hints) >= 3
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONHOME", "PYTHONPATH")}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                  if p and not (Path(p).parent / "pyvenv.cfg").exists())  # no venv's bin/
    for hint in hints:
        command = hint.strip()
        if command.startswith("sqlite3") and shutil.which("sqlite3") is None:
            continue
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", command], cwd=directory, env=env, text=True,
                              capture_output=True, timeout=SNIPPET_TIMEOUT, stdin=subprocess.DEVNULL)
        assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
        assert done.stdout.strip(), command


# ---------------------------------------------------------------------------------------------- SQL examples


def example(text: str, postgres: bool) -> Snippet:
    """The docs/analysis.md shell snippet containing ``text`` for SQLite or for PostgreSQL."""
    (found,) = [s for s in SNIPPETS if s.path.name == "analysis.md" and text in s.code
                and (s.marker == "postgres") == postgres]
    return found


def table_rows(output: str) -> list[list[str]]:
    """The data rows of ``sqlite3 -header -column`` or ``psql`` output (header, rules and counts dropped)."""
    rows: list[list[str]] = []
    for line in output.splitlines():
        if not line.strip() or set(line.strip()) <= set("-+ ") or line.startswith("("):
            continue
        cells = [c.strip() for c in line.split("|")] if "|" in line else line.split()
        rows.append(cells)
    return rows


def run_example(snippet: Snippet, directory: Path, env: dict[str, str], tmp_path: Path) -> list[list[str]]:
    done = run_snippet(snippet, directory, env, tmp_path)
    assert done.returncode == 0, done.stderr
    return table_rows(done.stdout)


GAP_ROWS = [  # (id, kind, start, end, symbols) relative to today's UTC midnight, in seconds
    ("g1", "disconnected", 10, 100, "btc_usdt,eth_usdt"),  # 90 s
    ("g2", "stall", -60, 30, ""),  # connection-wide, from yesterday: 30 s of today
    ("g3", "stall", 200, 260, "eth_usdt"),  # another symbol
    ("g4", "connected", 300, 300, "btc_usdt"),  # not a gap
    ("g5", "disconnected", -7200, -3600, "btc_usdt"),  # yesterday
]


def insert_gaps(url: str) -> None:
    from datetime import UTC, datetime, timedelta

    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    table = schema.metadata.tables["feed_events"]
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        conn.execute(table.insert(), [
            {"event_id": f"{event_id:0>32}", "kind": kind, "ts_start": midnight + timedelta(seconds=start),
             "ts_end": midnight + timedelta(seconds=end), "connection": "ws-9", "symbols": symbols,
             "channel": "", "detail": "docs-test", "venue": ""}  # venue: schema revision 0003
            for event_id, kind, start, end, symbols in GAP_ROWS
        ])
    engine.dispose()


def delete_gaps(url: str) -> None:
    table = schema.metadata.tables["feed_events"]
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        conn.execute(table.delete().where(table.c.detail == "docs-test"))
    engine.dispose()


def check_gap_answer(rows: list[list[str]]) -> None:
    listed = [(r[0], float(r[-2])) for r in rows[1:] if r[-1] == "docs-test"]  # kind ... seconds, detail
    assert sorted(listed) == [("disconnected", 90.0), ("stall", 30.0)]
    total = rows[rows.index(["gaps", "seconds_not_watched"]) + 1]
    assert [int(total[0]), float(total[1])] == [2, 120.0]


def check_levels_answer(rows: list[list[str]], sql_url: str) -> None:
    from analysis import load

    levels = load.load_book_levels(sql_url, "btc_usdt", depth=3)
    last = levels[levels["ts_recv"] == levels["ts_recv"].max()]
    expected = sorted((r.side, int(r.level), float(r.price), float(r.amount)) for r in last.itertuples())
    got = sorted((r[-4], int(r[-3]), float(r[-2]), float(r[-1])) for r in rows[1:])
    assert len(expected) == 6 and got == expected


def check_spread_answer(rows: list[list[str]], sql_url: str) -> None:
    import pandas as pd

    from analysis import load, market

    top = load.load_book_top(sql_url).dropna(subset=["bid_price", "ask_price"])
    spreads = market.spread(top).assign(symbol=top["symbol"].to_numpy(), minute=top.index.floor("min"))
    expected = spreads.groupby(["symbol", "minute"]).agg(
        snapshots=("spread", "size"), spread=("spread", "mean"), spread_bps=("spread_bps", "mean"))
    got = {}
    for r in rows[1:]:  # symbol, minute (one or two cells), snapshots, spread, spread_bps
        minute = pd.Timestamp(" ".join(r[1:-3]))
        got[(r[0], minute if minute.tzinfo else minute.tz_localize("UTC"))] = r[-3:]
    assert set(got) == set(expected.index)
    for key, (snapshots, spread, bps) in got.items():
        want = expected.loc[key]
        assert int(snapshots) == want["snapshots"]
        assert abs(float(spread) - want["spread"]) <= 5e-9 + 1e-12 * abs(want["spread"]), key  # round(.., 8)
        assert abs(float(bps) - want["spread_bps"]) <= 0.005 + 1e-9, key  # round(.., 2)


@pytest.mark.skipif(shutil.which("sqlite3") is None, reason="the sqlite3 command-line client is missing")
def test_sqlite_examples_answer_from_the_recording(checkout: tuple[Path, str], tmp_path: Path) -> None:
    """Levels, gaps and spread from the SQL examples equal what the loaders and measures compute."""
    directory = tmp_path / "copy"
    (directory / "data").mkdir(parents=True)
    shutil.copy(checkout[0] / "data" / "recording.sqlite", directory / "data")
    sql_url = f"sqlite:///{directory / 'data' / 'recording.sqlite'}"
    insert_gaps(sql_url)
    env = venv_env(checkout[0])
    check_gap_answer(run_example(example("CREATE TEMP VIEW gaps", False), directory, env, tmp_path))
    check_levels_answer(run_example(example("json_each", False), directory, env, tmp_path), sql_url)
    check_spread_answer(run_example(example("spread_bps", False), directory, env, tmp_path), sql_url)


@pytest.mark.postgres
@pytest.mark.skipif(shutil.which("psql") is None, reason="the psql command-line client is not installed")
def test_postgres_examples_answer_from_the_recording(
    checkout: tuple[Path, str], postgres_recording: dict[str, str], tmp_path: Path
) -> None:
    env = venv_env(checkout[0], **postgres_recording)
    url = postgres_recording["OKEX_SQL_URL"]
    insert_gaps(url)
    try:
        check_gap_answer(run_example(example("CREATE TEMP VIEW gaps", True), checkout[0], env, tmp_path))
    finally:
        delete_gaps(url)
    check_levels_answer(run_example(example("jsonb_array_elements", True), checkout[0], env, tmp_path), url)
    check_spread_answer(run_example(example("spread_bps", True), checkout[0], env, tmp_path), url)


def test_the_demo_hint_names_the_venv_python_as_typed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In the checkout (``make demo``): ``.venv/bin/python``; elsewhere the interpreter's absolute path."""
    from recorder.collector import demo

    monkeypatch.setattr(sys, "executable", str(tmp_path / "my dir" / ".venv" / "bin" / "python"))
    (tmp_path / "my dir").mkdir()
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "my dir")
    assert demo._python() == ".venv/bin/python"
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert demo._python() == f"'{tmp_path}/my dir/.venv/bin/python'"  # quoted for the shell
