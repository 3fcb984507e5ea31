"""The ``okex-recorder`` command line: one entry point, one subcommand per job.

Each subcommand lives in the module that owns the job; this module only wires
them up (lazily, so ``--help`` stays fast) and turns the project's errors into
one clear line and a non-zero exit code.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import re
import sys
from collections.abc import Sequence
from typing import NoReturn

from recorder import __version__
from recorder.config import mask_url
from recorder.errors import RecorderError

# name -> (module, help). The module defines ``add_arguments(parser)`` and ``run(args) -> int``;
# ``module:name`` instead names ``add_<name>_arguments(parser)`` and ``<name>_command(args) -> int``
# (the composition root, recorder.app, holds two commands).
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("recorder.collector.demo", "start the simulator, record a minute into ./data, summarise"),
    "run": ("recorder.app:run", "run the WebSocket collector (and the poller if configured)"),
    "status": ("recorder.collector.status", "show the state of a running or finished recording"),
    "poll": ("recorder.app:poll", "run only the signed REST poller (balances, orders)"),
    "simulate": ("recorder.simulator.cli", "run the local exchange (OKEx v1; OKX v5 with --venue)"),
    "db": ("recorder.storage.cli", "database schema migrations (upgrade, downgrade, current, check)"),
    "compact": ("recorder.storage.compact", "merge a day's small Parquet files"),
    "store": ("recorder.storage.consume", "write SQL and/or Parquet from the NATS JetStream bus"),
}


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one clear line (no usage dump) and exit code 2."""

    def error(self, message: str) -> NoReturn:
        # argparse quotes the arguments it did not take: a database or bus URL among them may hold a
        # password (`status --sql-url postgresql://u:pw@...`)
        message = _URL_IN_TEXT.sub(lambda m: mask_url(m.group(0)), message)
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


DESCRIPTION = ("Market-data and account recorder for the OKEx v1 spot API and the OKX v5 API (venues "
               "okex_v1 and okx_v5).")

_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"]+")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="okex-recorder",
        description=DESCRIPTION,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=_Parser)
    for name, (spec, help_text) in COMMANDS.items():
        module_name, _, command = spec.partition(":")
        module = importlib.import_module(module_name)
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        getattr(module, f"add_{command}_arguments" if command else "add_arguments")(cmd)
        cmd.set_defaults(_run=getattr(module, f"{command}_command" if command else "run"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args._run(args)
        return code
    except RecorderError as exc:
        logging.getLogger("recorder").debug("fatal error", exc_info=True)
        print(f"okex-recorder {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `okex-recorder status --json | head`: the reader has gone, not an error of ours
        with contextlib.suppress(OSError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())  # so the interpreter's final flush does not complain
        return 141  # 128 + SIGPIPE, what a shell tool killed by the broken pipe returns


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
