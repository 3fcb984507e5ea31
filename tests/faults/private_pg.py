"""A private PostgreSQL server for tests that must stop a database (never the shared one on 5432).

``initdb`` + ``pg_ctl`` from ``/usr/lib/postgresql/*/bin`` in a temporary directory, on a
free loopback port, run as the ``postgres`` user when the tests run as root (initdb refuses
root). :func:`private_postgres` skips the test with the reason when that is impossible.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivatePostgres:
    """One throwaway cluster: :meth:`start`, :meth:`stop` (``-m immediate`` by default), ``url``."""

    def __init__(self, bindir: Path, base: Path, user: str | None) -> None:
        self.bindir = bindir
        self.base = base
        self.data = base / "data"
        self.log = base / "server.log"
        self.user = user
        self.port = _free_port()
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self.user is not None:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=check, cwd=self.base)

    def init(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")

    def start(self) -> None:
        opts = f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-o", opts, "-l", str(self.log), "-w", "-t", "60", "start")

    def stop(self, mode: str = "immediate") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop", check=False)


@contextlib.contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    """A started private server (stopped and deleted afterwards); skips if it cannot be made."""
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not bins:
        pytest.skip("no PostgreSQL server binaries (/usr/lib/postgresql/*/bin/initdb) for a private instance")
    user = None
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and no 'postgres' user to run a private PostgreSQL as")
        if shutil.which("runuser") is None:
            pytest.skip("running as root without runuser: cannot start a private PostgreSQL")
        user = "postgres"
    base = Path(tempfile.mkdtemp(prefix="okex-pg-"))  # not under pytest's root-only tmp
    if user is not None:
        info = pwd.getpwnam(user)
        os.chown(base, info.pw_uid, info.pw_gid)
    server = PrivatePostgres(Path(bins[-1]).parent, base, user)
    try:
        try:
            server.init()
            server.start()
        except subprocess.CalledProcessError as exc:
            pytest.skip(f"cannot start a private PostgreSQL: {exc.stderr.strip()[:300]}")
        yield server
    finally:
        server.stop("immediate")
        shutil.rmtree(base, ignore_errors=True)
