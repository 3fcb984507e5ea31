"""The OKEx v1 venue: its protocol core, pure functions and classes, no I/O.

Signing (:mod:`.signing`), error codes (:mod:`.errors`), channel names
(:mod:`.channels`), the pairs table (:mod:`.pairs`), WebSocket frame decoding
(:mod:`.parse`), REST response parsing (:mod:`.rest`), the order book
(:mod:`.book`), the order status codes (:mod:`.enums`), its settings
(:mod:`.settings`) and the sans-I/O WebSocket session (:mod:`.session`).
No asyncio, no sockets, no database anywhere in this package.

:data:`VENUE` is what the registry (:mod:`recorder.venue`) hands out for ``okex_v1``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from recorder.records import BookSnapshot, Record
from recorder.venue import ConnectionPlan, FeedCounters

__all__ = ["NAME", "VENUE", "OkexV1"]

NAME = "okex_v1"


class OkexV1:
    """The :class:`recorder.venue.Venue` of the OKEx v1 API (PROTOCOL.md of okex-v1)."""

    name = NAME

    def parse_settings(self, table: Mapping[str, Any]) -> Any:
        """:class:`~.settings.V1Settings` from a ``[venues.okex_v1]`` table."""
        from recorder.venues.okex_v1.settings import parse_settings

        return parse_settings(table)

    def symbols(self, settings: Any) -> tuple[str, ...]:
        return tuple(settings.symbols)

    def rest_url(self, settings: Any) -> str:
        return str(settings.rest_url)

    def plan_connections(self, settings: Any) -> list[ConnectionPlan]:
        """One connection per ``symbols_per_connection`` symbols: ``ws-0``, ``ws-1``…"""
        from recorder.venues.okex_v1.session import plan_connection

        return [plan_connection(f"ws-{i}", [ch for symbol in symbols for ch in settings.channels_for(symbol)],
                                settings.ws_url)
                for i, symbols in enumerate(settings.connection_shares())]

    def open_session(self, plan: ConnectionPlan, settings: Any, out: list[Record],
                     counters: FeedCounters) -> Any:
        from recorder.venues.okex_v1.session import V1Session

        return V1Session(plan, settings, out, counters)

    # -- the book audit (recorder.venue.BookAuditSource) -------------------------------------------

    def audit_request(self, rest_url: str, symbol: str, depth: int) -> tuple[str, dict[str, str]]:
        """``GET depth.do?symbol=X&size=D`` (PROTOCOL.md "REST", depth)."""
        return rest_url.rstrip("/") + "/depth.do", {"symbol": symbol, "size": str(depth)}

    def audit_parse(self, body: bytes, symbol: str, answered: datetime) -> BookSnapshot:
        from recorder.venues.okex_v1.parse import decode_json
        from recorder.venues.okex_v1.rest import parse_depth

        return parse_depth(decode_json(body), symbol, answered)


VENUE = OkexV1()
