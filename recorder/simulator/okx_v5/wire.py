"""OKX v5 wire helpers (PROTOCOL.md v5 §0, §3.2, §6, §9): strings, levels, checksum, signing.

Pure functions, no I/O. Numbers go on the wire as strings made from Decimals
(never floats); absent values are ``""``; times are Unix milliseconds as strings.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import zlib
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from recorder.simulator.market import format_decimal

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
Level = list[str]  # [px, sz, "0", orderCount]


def s(value: Decimal | int | None) -> str:
    """A wire string: plain decimal (``"0.0085"``, never ``"8.5E-3"``), ``""`` for None."""
    if value is None:
        return ""
    if isinstance(value, int):
        return str(value)
    return format_decimal(value)


def order_count(px: str, sz: str) -> str:
    """The simulated number of orders at a level (1..9), a deterministic function of its strings."""
    return str(zlib.crc32(f"{px}:{sz}".encode()) % 9 + 1)


def level(px: Decimal, sz: Decimal) -> Level:
    """One book level ``[px, sz, "0", orderCount]`` (§3.2); ``sz == 0`` is a delete (count "0")."""
    p, q = s(px), s(sz)
    return [p, q, "0", "0" if not sz else order_count(p, q)]


def checksum(bids: Sequence[Sequence[str]], asks: Sequence[Sequence[str]]) -> int:
    """The legacy v5 book checksum (§3.2, §9): signed CRC32 of the top 25 bids/asks interleaved.

    ``bids`` highest first, ``asks`` lowest first; only the first two strings of each level are used,
    exactly as given.
    """
    parts: list[str] = []
    for i in range(25):
        if i < len(bids):
            parts += bids[i][:2]
        if i < len(asks):
            parts += asks[i][:2]
    v = zlib.crc32(":".join(parts).encode()) & 0xFFFFFFFF
    return v - (1 << 32) if v >= (1 << 31) else v


def sign(secret: str, prehash: str) -> str:
    """``Base64(HMAC-SHA256(secret, prehash))`` (§6); the key is the secret's UTF-8 bytes."""
    return base64.b64encode(hmac.new(secret.encode(), prehash.encode(), hashlib.sha256).digest()).decode()


def iso_ms(ms: int) -> str:
    """``2020-12-08T09:08:57.715Z`` for Unix milliseconds ``ms`` (the REST timestamp header, §6)."""
    dt = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def parse_iso_ms(text: str) -> int | None:
    """Unix ms of an ``OK-ACCESS-TIMESTAMP`` value (ISO 8601, UTC ``Z``, milliseconds), None if malformed."""
    if not text.endswith("Z") or "T" not in text:
        return None
    try:
        dt = datetime.strptime(text[:-1], "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=UTC)
    except ValueError:
        return None
    return (dt - _EPOCH) // timedelta(milliseconds=1)


def inst_to_symbol(inst_id: str) -> str:
    """``BTC-USDT`` -> the market model's ``btc_usdt``."""
    return inst_id.lower().replace("-", "_")


def symbol_to_inst(symbol: str) -> str:
    """``btc_usdt`` -> ``BTC-USDT``."""
    return symbol.upper().replace("_", "-")
