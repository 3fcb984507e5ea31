"""The ``[bus]`` configuration section: where and how records travel over NATS JetStream.

Kept apart from :mod:`recorder.config` (which only holds a ``bus: BusConfig`` field) so the
bus has one place for its settings and their checks. See ``docs/scale-out.md``.
"""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass

from recorder.errors import ConfigError

__all__ = ["BusConfig", "default_collector_id"]

_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_PREFIX = re.compile(r"[A-Za-z0-9_-]{1,32}(\.[A-Za-z0-9_-]{1,32}){0,3}")
RETENTIONS = ("limits", "interest")


@dataclass(frozen=True, slots=True)
class BusConfig:
    """``[bus]``: NATS JetStream transport between collectors and writers.

    ``url`` empty (the default) means no bus: the collector writes its stores directly.
    ``stream`` is the JetStream stream holding ``<subject_prefix>.>``; ``max_age`` (s, 0 =
    unlimited), ``max_bytes`` (0 = unlimited), ``retention`` (``limits``: messages stay until
    a limit removes them, so a new writer can catch up; ``interest``: removed once every
    writer's consumer acknowledged them) and ``replicas`` apply when this process creates
    the stream. ``duplicate_window`` (s) is how long JetStream remembers message ids: copies
    of a row published by redundant collectors (or re-published after an outage) within it
    are dropped. ``publish_timeout`` / ``connect_timeout`` bound every call (s).
    ``dedupe_across_collectors`` (default true) publishes tickers, book snapshots and balances
    one row per message, so JetStream drops the copy of a row that another collector recording
    the same symbol published; false (only where no symbol is recorded by two collectors) sends
    them batched like the other datasets, one message per subject and flush (about 5x the
    records/s through the bus, bench/README.md): a batch re-published after an outage is still
    dropped by its id, but copies from a second collector would be stored twice.
    """

    url: str = ""
    stream: str = "OKEX"
    subject_prefix: str = "okex"
    max_age: float = 7 * 86400.0
    max_bytes: int = 0
    duplicate_window: float = 600.0
    retention: str = "limits"
    replicas: int = 1
    publish_timeout: float = 5.0
    connect_timeout: float = 2.0
    dedupe_across_collectors: bool = True

    def __post_init__(self) -> None:
        if self.url and not all(u.strip().split("://", 1)[0] in ("nats", "tls")
                                for u in self.url.split(",") if "://" in u):
            raise ConfigError(f"config: bus.url must be nats://HOST:PORT (or tls://), got {self.url!r}")
        if not _NAME.fullmatch(self.stream):
            raise ConfigError(f"config: bus.stream must be letters, digits, _ or -, got {self.stream!r}")
        if not _PREFIX.fullmatch(self.subject_prefix):
            raise ConfigError(
                f"config: bus.subject_prefix must be dot-separated tokens, got {self.subject_prefix!r}")
        if self.retention not in RETENTIONS:
            raise ConfigError(f"config: bus.retention must be one of {', '.join(RETENTIONS)}")
        for name in ("max_age", "max_bytes"):
            if getattr(self, name) < 0:
                raise ConfigError(f"config: bus.{name} must be >= 0 (0 = unlimited)")
        for name in ("duplicate_window", "publish_timeout", "connect_timeout", "replicas"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"config: bus.{name} must be > 0")
        if self.max_age and self.duplicate_window > self.max_age:
            raise ConfigError("config: bus.duplicate_window must not exceed bus.max_age")


def default_collector_id() -> str:
    """``<hostname>-<pid>``: the collector id used when ``collector.id`` is not set."""
    host = re.sub(r"[^A-Za-z0-9_.-]", "_", socket.gethostname())[:40] or "host"
    return f"{host}-{os.getpid()}"
