"""OKX v5 signing: REST headers and the WebSocket login (PROTOCOL.md §6, §2.5).

``sign = Base64(HMAC-SHA256(key = secret UTF-8, msg = prehash))``;
REST ``prehash = timestamp + METHOD + requestPath(+query) + body`` with the ISO-8601
millisecond ``Z`` timestamp; WebSocket login ``prehash = seconds + "GET" +
"/users/self/verify"``. Secrets never appear in reprs or messages.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from recorder.credentials import mask
from recorder.errors import ConfigError

__all__ = [
    "V5Credentials",
    "clock_offset_ms",
    "iso_timestamp",
    "prehash",
    "rest_headers",
    "sign",
    "ws_login_args",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class V5Credentials:
    """API key, secret and passphrase (§6). ``repr`` shows a masked key only, never secret or passphrase."""

    api_key: str
    secret: str = field(repr=False)
    passphrase: str = field(repr=False)

    def __post_init__(self) -> None:
        for name in ("api_key", "secret", "passphrase"):
            if not getattr(self, name):
                raise ConfigError(f"OKX v5 credentials: {name} is empty")

    def __repr__(self) -> str:
        return f"V5Credentials(api_key={mask(self.api_key)!r}, secret=***, passphrase=***)"

    __str__ = __repr__


def sign(secret: str, prehash_text: str) -> str:
    """Base64 HMAC-SHA256 of ``prehash_text`` keyed by ``secret``'s UTF-8 bytes (§6; vectors R1–R4, WS)."""
    digest = hmac.new(secret.encode(), prehash_text.encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def prehash(timestamp: str, method: str, request_path: str, body: str = "") -> str:
    """``timestamp + METHOD + requestPath + body`` (§6). ``request_path`` includes ``?query`` for GET."""
    return f"{timestamp}{method.upper()}{request_path}{body}"


def iso_timestamp(epoch_ms: int) -> str:
    """``OK-ACCESS-TIMESTAMP`` for ``epoch_ms`` (ms, UTC): ISO 8601 with milliseconds and ``Z`` (§6),
    e.g. ``2020-12-08T09:08:57.715Z``."""
    t = _EPOCH + timedelta(milliseconds=epoch_ms)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def clock_offset_ms(local_before_ms: int, server_ms: int, local_after_ms: int) -> int:
    """Server clock minus local clock in ms, from one ``/public/time`` round trip (§4.6, §6).

    The server's ``ts`` is compared with the midpoint of the local send and receive
    times; add the result to local time before signing so that skew never gives 50102.
    """
    return server_ms - (local_before_ms + local_after_ms) // 2


def rest_headers(
    credentials: V5Credentials,
    method: str,
    request_path: str,
    body: str = "",
    *,
    epoch_ms: int,
    simulated_trading: bool = False,
) -> dict[str, str]:
    """The signed headers of one private request (§6). ``epoch_ms`` = local time + clock offset.

    ``request_path`` must be exactly what is sent (path + ``?`` + query, same order/encoding).
    """
    ts = iso_timestamp(epoch_ms)
    headers = {
        "OK-ACCESS-KEY": credentials.api_key,
        "OK-ACCESS-SIGN": sign(credentials.secret, prehash(ts, method, request_path, body)),
        "OK-ACCESS-TIMESTAMP": ts,
        "OK-ACCESS-PASSPHRASE": credentials.passphrase,
        "Content-Type": "application/json",
    }
    if simulated_trading:
        headers["x-simulated-trading"] = "1"
    return headers


def ws_login_args(credentials: V5Credentials, timestamp_s: str) -> dict[str, str]:
    """The ``args[0]`` of the WebSocket ``login`` op (§2.5); ``timestamp_s`` is Unix seconds as a string."""
    return {
        "apiKey": credentials.api_key,
        "passphrase": credentials.passphrase,
        "timestamp": timestamp_s,
        "sign": sign(credentials.secret, prehash(timestamp_s, "GET", "/users/self/verify")),
    }
