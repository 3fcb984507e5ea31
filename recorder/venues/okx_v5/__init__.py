"""The OKX API v5 protocol core (venue ``okx_v5``): pure, sans-I/O.

Built from PROTOCOL.md (OKX v5; copied facts, never read at run time). Modules:

* :mod:`.schemas` — wire Structs with v5's field names, numbers as ``str``.
* :mod:`.parse` — wire → typed records (:mod:`.records`); ``""`` → None.
* :mod:`.channels` — channel enum, URL per channel, connection planning.
* :mod:`.book` — the order book in integer ticks, seqId chain, CRC32 checksum.
* :mod:`.session` — sans-I/O WebSocket session: frames in, records/events and
  messages to send (subscribe, unsubscribe, ``ping``, resubscribe, login) out.
* :mod:`.rest` — read-only endpoint allowlist, request building, response
  parsing, pagination cursors.
* :mod:`.signing` — HMAC-SHA256 REST headers and WebSocket login.
* :mod:`.errors` — documented error codes, texts and classes.
* :mod:`.neutral` — v5 records → the venue-neutral records of :mod:`recorder.records`.
* :mod:`.settings` — the ``[venues.okx_v5]`` table.
* :mod:`.venue` — :data:`VENUE`, the :class:`recorder.venue.Venue` (plans, sessions).

``docs/venues/okx_v5.md`` describes what is implemented, the configurable
unconfirmed points and the mapping to the project's neutral records.
"""

from .book import ChecksumMode, OrderBook, Scale, checksum
from .channels import Channel, ChannelArg, UrlKind, candle_channel, plan_connections
from .records import VENUE as VENUE_NAME
from .session import SessionConfig, V5Session
from .signing import V5Credentials
from .venue import VENUE

__all__ = [
    "VENUE",
    "VENUE_NAME",
    "Channel",
    "ChannelArg",
    "ChecksumMode",
    "OrderBook",
    "Scale",
    "SessionConfig",
    "UrlKind",
    "V5Credentials",
    "V5Session",
    "candle_channel",
    "checksum",
    "plan_connections",
]
