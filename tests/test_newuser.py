"""What tripped up a first-time user and an operator trying the documented commands.

Each test is one mistake people make (or one thing that printed something untrue), with
the one clear line they should get instead of a traceback, a hang or silent damage.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from recorder import cli
from recorder.app import claim_storage
from recorder.config import Config, StorageConfig, load_config
from recorder.errors import ConfigError

CLI = [sys.executable, "-m", "recorder.cli"]


@pytest.mark.parametrize("command", ["run", "poll", "demo"])
@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "0", "-5"])
def test_duration_must_be_finite_and_positive(command: str, value: str, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """`--duration nan` / `inf` used to be accepted and the run never stopped by itself."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OKEX_API_KEY", "k")  # poll needs credentials before anything else
    monkeypatch.setenv("OKEX_SECRET_KEY", "s")
    assert cli.main([command, f"--duration={value}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"okex-recorder {command}: error: --duration must be a finite number of seconds > 0" in err
    # demo stops after 60 s by itself; it used to say it would run until SIGINT/SIGTERM
    hint = "record 60 s" if command == "demo" else "run until SIGINT/SIGTERM"
    assert err.rstrip().endswith(f"(leave it out to {hint})")
    assert list(tmp_path.iterdir()) == []  # refused before anything was created


@pytest.mark.parametrize(
    ("url", "hint"),
    [
        ("postgres://me:pw@db.example:5432/okex", "write it postgresql+psycopg://"),   # Heroku-style
        ("postgresql+psycopg2://me@db.example/okex", "write it postgresql+psycopg://"),  # driver not shipped
        ("mysql://me@db.example/okex", "supported: sqlite:///"),
    ],
)
def test_unsupported_sql_url_is_one_line_not_a_traceback(url: str, hint: str) -> None:
    """These used to end `run` / `poll` with a NoSuchModuleError / ModuleNotFoundError traceback."""
    with pytest.raises(ConfigError) as exc:
        StorageConfig(sql_url=url)
    message = str(exc.value)
    assert message.startswith("config: storage.sql_url: unsupported database URL scheme ")
    assert hint in message
    assert "pw" not in message  # the password stays masked


@pytest.mark.parametrize("url", ["sqlite:///data/recording.sqlite", "postgresql://me@db/okex",
                                 "postgresql+psycopg://me@db/okex", "sqlite+pysqlite:///x.sqlite"])
def test_supported_sql_urls_are_accepted(url: str) -> None:
    assert StorageConfig(sql_url=url).sql_url == url


def test_env_sql_url_with_postgres_scheme_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OKEX_SQL_URL", "postgres://postgres@127.0.0.1:5432/test")
    assert cli.main(["run", "--duration", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "unsupported database URL scheme 'postgres://'" in err


def _config(tmp_path: Path) -> Config:
    toml = tmp_path / "recorder.toml"
    toml.write_text(
        "[storage]\n"
        f"sql_url = 'sqlite:///{tmp_path}/r.sqlite'\n"
        f"parquet_root = '{tmp_path}/parquet'\n"
        f"spill_dir = '{tmp_path}/spill'\n"
        f"parquet_journal_dir = '{tmp_path}/journal'\n"
        "[collector]\n"
        f"status_file = '{tmp_path}/status.json'\n")
    (tmp_path / "spill").mkdir()
    (tmp_path / "journal").mkdir()
    return load_config(toml)


def _sleeper(*argv: str) -> subprocess.Popen[str]:
    """A live process with ``argv`` in its command line, once it runs (not merely forked: /proc shows it)."""
    code = "print('up', flush=True); import time; time.sleep(60)"
    proc = subprocess.Popen([sys.executable, "-c", code, *argv], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline() == "up\n"
    return proc


def test_a_second_process_on_the_same_journal_is_refused(tmp_path: Path) -> None:
    """Two `run`s with one config: the second took over the first's journal segments and the first
    died with a FileNotFoundError traceback, losing rows. Now the second one stops at start."""
    config = _config(tmp_path)
    with claim_storage(config):
        with pytest.raises(ConfigError) as exc, claim_storage(config):
            pass
        assert "journal (storage.parquet_journal_dir) is in use by another okex-recorder" in str(exc.value)
        assert "give each process its own collector.status_file" in str(exc.value)
    with claim_storage(config):  # released at the end of the block: free again
        pass


def test_a_second_process_on_the_same_status_file_is_refused(tmp_path: Path) -> None:
    config = _config(tmp_path)
    other = _sleeper("okex-recorder")
    try:
        (tmp_path / "status.json").write_text(json.dumps({
            "state": "running", "pid": other.pid, "updated_at": datetime.now(UTC).isoformat(),
            "config": {"status_interval": 10.0}}))
        with pytest.raises(ConfigError) as exc, claim_storage(config):
            pass
        assert f"belongs to a running okex-recorder process (pid {other.pid})" in str(exc.value)
    finally:
        other.kill()
        other.communicate()  # reaps it and closes its pipe
    with claim_storage(config):  # that process is gone: a restart may proceed
        pass


def test_status_piped_into_head_is_not_a_traceback(tmp_path: Path) -> None:
    """`okex-recorder status --json | head` printed a BrokenPipeError traceback."""
    status = tmp_path / "status.json"
    status.write_text(json.dumps({"state": "finished", "pid": 1, "started_at": "2026-11-30T00:00:00+00:00",
                                  "updated_at": "2026-11-30T00:00:01+00:00",
                                  "config": {"sql_url": f"sqlite:///{tmp_path}/r.sqlite"}}))
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader (head) has already gone
    try:
        proc = subprocess.run([*CLI, "status", "--json", "--no-sql", "--status-file", str(status)],
                              stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=120, cwd=tmp_path)
    finally:
        os.close(write_end)
    assert "Traceback" not in proc.stderr
    assert proc.stderr == ""
    assert proc.returncode == 141


def test_simulate_help_names_both_venues(capsys: pytest.CaptureFixture[str]) -> None:
    """`okex-recorder --help` said 'the local OKEx v1 exchange simulator' though --venue okx_v5 exists."""
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    line = " ".join(out.split("    simulate", 1)[1].split("\n    ")[0].split())
    assert "OKEx v1" in line and "OKX v5" in line


def test_loader_given_an_sqlite_path_without_url_says_so(tmp_path: Path) -> None:
    """`load.load_deals("data/recording.sqlite")` (the URL prefix forgotten) returned an empty frame."""
    from analysis import load

    db = tmp_path / "recording.sqlite"
    db.write_bytes(b"SQLite format 3\x00")
    with pytest.raises(ValueError) as exc:
        load.load_deals(str(db))
    assert "is a file, not a Parquet root directory" in str(exc.value)
    assert f"'sqlite:///{db}'" in str(exc.value)


def test_the_readmes_okx_v5_table_configures_run_for_the_live_exchange(tmp_path: Path) -> None:
    """The README's `[venues.okx_v5]` example, as a user pastes it into a config file, makes `run`
    record OKX v5 alone (v1 switched off) from the live endpoints, with the instruments it names."""
    import re

    from recorder.config import load_config, venue_settings

    readme = (Path(__file__).parent.parent / "README.md").read_text("utf-8")
    section = readme[readme.index("### Recording OKX v5"):]
    block = re.search(r"```toml\n(.*?)```", section, re.S)
    assert block is not None
    path = tmp_path / "v5.toml"
    path.write_text(block.group(1), "utf-8")
    (venue, settings), = venue_settings(load_config(path, env={}))
    assert venue.name == "okx_v5"
    assert settings.public_url == "wss://ws.okx.com:8443/ws/v5/public"
    assert settings.business_url == "wss://ws.okx.com:8443/ws/v5/business"
    assert list(settings.instruments) == ["BTC-USDT", "ETH-USDT"]


def _finished_status(tmp_path: Path, sql_url: str) -> Path:
    status = tmp_path / "status.json"
    status.write_text(json.dumps({"state": "finished", "pid": 1, "started_at": "2026-11-30T00:00:00+00:00",
                                  "updated_at": "2026-11-30T00:00:01+00:00",
                                  "config": {"sql_url": sql_url, "connections": 1, "symbols": ["btc_usdt"]}}))
    return status


def test_status_from_another_directory_creates_no_database_and_json_stays_json(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """The status file names `sqlite:///data/recording.sqlite`, relative to the recorder's directory.
    `status --json` run elsewhere created an empty database file there, and printed the
    "(row counts unavailable ...)" note on stdout ahead of the JSON, so `| jq` failed."""
    status = _finished_status(tmp_path, "sqlite:///recording.sqlite")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert cli.main(["status", "--json", "--status-file", str(status)]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["sql_rows"] is None  # stdout is exactly the JSON document
    assert "no SQLite file recording.sqlite" in err
    assert "relative to the recorder's working directory" in err
    assert list(elsewhere.iterdir()) == []  # no stray empty database


def test_status_says_one_connection(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = _finished_status(tmp_path, f"sqlite:///{tmp_path}/r.sqlite")
    assert cli.main(["status", "--no-sql", "--status-file", str(status)]) == 0
    assert "(1 symbol, 1 connection)" in capsys.readouterr().out


def test_poll_beside_a_running_collector_is_refused_only_for_shared_directories(tmp_path: Path) -> None:
    """`poll` writes no status file: a live collector's status file alone does not stop it."""
    config = _config(tmp_path)
    other = _sleeper("okex-recorder")
    try:
        (tmp_path / "status.json").write_text(json.dumps({
            "state": "running", "pid": other.pid, "updated_at": datetime.now(UTC).isoformat(),
            "config": {"status_interval": 10.0}}))
        with claim_storage(config, status_file=False):
            pass
        with pytest.raises(ConfigError), claim_storage(config):
            pass
    finally:
        other.kill()
        other.communicate()  # reaps it and closes its pipe


def test_env_override_with_single_underscores_is_an_error_not_ignored(tmp_path: Path) -> None:
    """OKEX_RECORDER_COLLECTOR_SYMBOLS=... was silently ignored: the recorder recorded the defaults."""
    with pytest.raises(ConfigError) as exc:
        load_config(None, env={"OKEX_RECORDER_COLLECTOR_SYMBOLS": "ltc_btc"})
    assert "OKEX_RECORDER_COLLECTOR_SYMBOLS is not an override" in str(exc.value)
    assert "OKEX_RECORDER__COLLECTOR__SYMBOLS" in str(exc.value)
    config = load_config(None, env={"OKEX_RECORDER__COLLECTOR__SYMBOLS": "ltc_btc"})
    assert tuple(config.collector.symbols) == ("ltc_btc",)


def test_status_shows_refused_subscriptions(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A symbol the exchange does not list (`foo_bar`): its subscription was refused, but `status`
    showed nothing of it (only the log did)."""
    status = _finished_status(tmp_path, f"sqlite:///{tmp_path}/r.sqlite")
    data = json.loads(status.read_text())
    data["error_acks"] = 2
    data["subscriptions_refused"] = {"ok_sub_spot_foo_bar_ticker": 2}
    status.write_text(json.dumps(data))
    assert cli.main(["status", "--no-sql", "--status-file", str(status)]) == 0
    out = capsys.readouterr().out
    assert ("refused:     1 channel refused by the exchange, getting no data and retried with the backoff: "
            "ok_sub_spot_foo_bar_ticker (2 subscription error replies since start; see the log, and "
            "feed_events rows of kind 'subscribe_error')") in out.splitlines()
    # It said "N subscription error(s)" for channels that had delivered since their retry.
    data["error_acks"], data["subscriptions_refused"], data["state"] = 1, {}, "running"
    status.write_text(json.dumps(data))
    assert cli.main(["status", "--no-sql", "--status-file", str(status)]) == 0
    assert ("refused:     no channel now (1 subscription error reply since start; those channels deliver "
            "since their retry)") in capsys.readouterr().out.splitlines()
    # A finished run's list is empty because the run stopped, not because the channels delivered
    data["state"] = "finished"
    status.write_text(json.dumps(data))
    assert cli.main(["status", "--no-sql", "--status-file", str(status)]) == 0
    assert ("refused:     1 subscription error reply since start (see the log, and feed_events rows of kind "
            "'subscribe_refused': a span still open at the stop is a channel that never delivered)"
            ) in capsys.readouterr().out.splitlines()


def test_a_new_sqlite_file_is_said_to_be_created_not_upgraded(tmp_path: Path,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    """The first `run` said 'upgrading the SQLite schema ... to head' for a file it had just created."""
    import logging

    from recorder.app import prepare_database

    config = _config(tmp_path)
    with caplog.at_level(logging.INFO, logger="recorder.collector"):
        prepare_database(config)
        prepare_database(config)  # at head now: says nothing
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [f"creating the SQLite database {tmp_path}/r.sqlite (schema at head)"]


def test_demo_status_hint_runs_without_activating_the_venv(monkeypatch: pytest.MonkeyPatch) -> None:
    """After `make demo` (venv not active) the summary said `okex-recorder status ...`: command not found.
    It now names the script beside the interpreter, as it does `.venv/bin/python`."""
    from recorder.collector.demo import _okex_recorder

    script = Path(sys.executable).absolute().parent / "okex-recorder"
    if not script.is_file():
        pytest.skip(f"no okex-recorder script beside {sys.executable} (package not installed in this venv)")
    monkeypatch.chdir(script.parent.parent.parent)  # the checkout holding .venv
    hint = _okex_recorder()
    assert hint == str(Path(*script.parts[-3:]))  # .venv/bin/okex-recorder
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"} | {"PATH": "/usr/bin:/bin"}
    proc = subprocess.run([hint, "--version"], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0 and proc.stdout.startswith("okex-recorder ")


def test_a_stale_status_naming_another_programs_pid_does_not_stop_a_restart(tmp_path: Path) -> None:
    """A container restarted within seconds: the status file says `running` with a pid that now belongs
    to some other program. That must not stop the new collector (systemd would not restart it: exit 2)."""
    config = _config(tmp_path)
    other = _sleeper()
    try:
        (tmp_path / "status.json").write_text(json.dumps({
            "state": "running", "pid": other.pid, "updated_at": datetime.now(UTC).isoformat(),
            "config": {"status_interval": 10.0}}))
        if not Path(f"/proc/{other.pid}/cmdline").exists():
            pytest.skip("no /proc: the check assumes a live pid is a recorder")
        with claim_storage(config):
            pass
    finally:
        other.kill()
        other.communicate()  # reaps it and closes its pipe


def test_a_second_demo_into_the_same_directory_names_data_dir(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """`make demo` twice at once (or while `make notebooks` makes its recording): the second is refused,
    and told about --data-dir (the only knob demo has), not about configuration keys."""
    from recorder.collector.demo import demo_config

    data_dir = tmp_path / "data"
    first = demo_config(data_dir, "ws://127.0.0.1:1/ws/v1", "http://127.0.0.1:2/api/v1", ["btc_usdt"])
    for directory in (first.storage.parquet_journal_dir, first.storage.spill_dir):
        Path(directory).mkdir(parents=True)
    with claim_storage(first):
        assert cli.main(["demo", "--duration", "1", "--data-dir", str(data_dir)]) == 2
    err = capsys.readouterr().err
    assert "is in use by another okex-recorder process: another demo or run is recording into" in err
    assert "another --data-dir" in err


def test_refused_arguments_are_echoed_without_passwords(capsys: pytest.CaptureFixture[str]) -> None:
    """`status --sql-url postgresql://u:pw@...` (status has no --sql-url): argparse echoed the URL."""
    with pytest.raises(SystemExit) as exc:
        cli.main(["status", "--json", "--sql-url", "postgresql+psycopg://postgres:pw-SECRET@127.0.0.1/x"
                  "?password=pw-SECRET2&sslmode=prefer"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err == ("okex-recorder: error: unrecognized arguments: --sql-url postgresql+psycopg://postgres:***@"
                   "127.0.0.1/x?password=***&sslmode=prefer (see 'okex-recorder --help')\n")


def test_status_of_a_postgres_recording_without_its_url_names_the_recorders_database(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """The recorder ran with OKEX_SQL_URL=postgresql://...; `status --config recorder.toml` in a shell
    without it said "no SQLite file data/recording.sqlite ... run status there, or pass --config",
    in that directory and with --config given. It names both databases now, and what to set."""
    status = _finished_status(tmp_path, "postgresql+psycopg://me:***@db.example:5432/rec")
    config = tmp_path / "recorder.toml"
    config.write_text(f'[collector]\nstatus_file = "{status}"\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OKEX_SQL_URL", raising=False)
    assert cli.main(["status", "--config", str(config)]) == 0
    err = capsys.readouterr().err
    assert err == ("(row counts unavailable: the recording wrote to postgresql+psycopg://me:***@"
                   "db.example:5432/rec, this configuration names sqlite:///data/recording.sqlite: give "
                   "status the recorder's database (OKEX_SQL_URL or storage.sql_url, as the recorder had "
                   "it))\n")
