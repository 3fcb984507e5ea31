"""The command line: every subcommand is wired, and bad input gets one clear line and exit code 2."""

from __future__ import annotations

import pytest

from recorder import cli


def test_every_subcommand_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    for name in cli.COMMANDS:
        with pytest.raises(SystemExit) as exc:
            cli.main([name, "--help"])
        assert exc.value.code == 0
        assert f"usage: okex-recorder {name}" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["frobnicate"], "okex-recorder: error: argument COMMAND: invalid choice: 'frobnicate'"),
        (["run", "--no-such-flag"], "okex-recorder: error: unrecognized arguments: --no-such-flag"),
        (["db", "upgrade", "--sql-url"], "okex-recorder db: error: argument --sql-url: expected one"),
    ],
)
def test_bad_command_line_is_one_line_and_exit_2(
    argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(expected)


def test_recorder_errors_become_one_line_and_exit_2(
    tmp_path: object, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(["run", "--config", "/nonexistent/okex.toml"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("okex-recorder run: error: ")
    assert "/nonexistent/okex.toml" in err


def test_top_level_help_names_every_db_action(capsys: pytest.CaptureFixture[str]) -> None:
    """The one-line help of `db` lists the actions `db` really takes (it once left out `check`)."""
    import argparse

    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    db = sub.choices["db"]
    action = next(a for a in db._actions if a.dest == "action")
    assert action.choices is not None
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    db_line = " ".join(out.split("    db ", 1)[1].split("\n    ")[0].split())
    assert db_line == "database schema migrations (" + ", ".join(action.choices) + ")"


def test_help_describes_run_status_and_simulate_options(capsys: pytest.CaptureFixture[str]) -> None:
    for argv, expected in ((["status", "--help"], ["--check", "--max-lag", "--stale-after"]),
                           (["simulate", "--help"], ["--port", "--rest-port", "--port + 1"]),
                           (["demo", "--help"], ["--seed"])):
        with pytest.raises(SystemExit):
            cli.main(argv)
        out = " ".join(capsys.readouterr().out.split())
        assert all(e in out for e in expected), (argv, out)


def test_help_names_both_venues(capsys: pytest.CaptureFixture[str]) -> None:
    """``--help`` says what is recorded: OKEx v1 and OKX v5 (it once said "the OKEx v1 spot API" alone)."""
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert ("Market-data and account recorder for the OKEx v1 spot API and the OKX v5 API (venues okex_v1 "
            "and okx_v5).") in out
