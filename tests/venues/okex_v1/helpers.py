"""Test helpers: a :class:`~recorder.collector.pipeline.FramePipeline` over OKEx v1 sessions, and
the subscription messages its sessions hand out."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from recorder.collector.pipeline import FramePipeline
from recorder.venue import get_venue
from recorder.venues.okex_v1.channels import Channel
from recorder.venues.okex_v1.session import plan_connection
from recorder.venues.okex_v1.settings import V1Settings

_LATER = datetime(2100, 1, 1, tzinfo=UTC)


def v1_pipeline(shares: Mapping[str, Sequence[Channel]] | None = None, **settings: Any) -> FramePipeline:
    """A pipeline of v1 sessions, one per connection of ``shares`` (others opened on first use)."""
    plans = [plan_connection(conn, channels) for conn, channels in (shares or {}).items()]
    return FramePipeline.for_venue(get_venue("okex_v1"), V1Settings(**settings), plans)


def requested(p: FramePipeline, conn: str = "ws-0", *, now: datetime = _LATER) -> list[tuple[str, str]]:
    """``(event, channel)`` of every message the session of ``conn`` hands out once its paced
    requests are due (``now``): subscriptions, resubscriptions, retries."""
    session = p.session(conn)
    session.on_timer(now)
    return [(obj["event"], obj["channel"]) for message in session.data_to_send()
            for obj in json.loads(message)]
