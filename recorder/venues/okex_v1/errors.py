"""The documented error codes (``data/error-codes.csv``), per transport.

REST and WebSocket codes are different tables: REST 10001 is "request frequency
too high", WebSocket 10001 is "illegal parameters". :func:`exchange_error` turns
a code into the project's :class:`~recorder.errors.ExchangeError`, classified.
"""

from __future__ import annotations

import csv
import functools
import io
from dataclasses import dataclass
from importlib import resources

from recorder.errors import ErrorClass, ExchangeError, Transport


@dataclass(frozen=True, slots=True)
class ErrorCode:
    transport: Transport
    code: int
    message_en: str
    message_zh: str


# Classification of REST codes (PROTOCOL.md "REST"; issue "Error codes").
_REST_RATE_LIMITED = frozenset({10001})
_REST_RETRY_LATER = frozenset({10002, 10004, 10023, 1008, 1015, 1029, 1218})
# Account frozen (10100, 1048) counts as auth: a person must act, retrying will not help.
_REST_AUTH = frozenset({10005, 10006, 10007, 10017, 10216, 1014, 1209, 10100, 1048})
_WS_RETRY_LATER = frozenset({20014, 20100})
_WS_AUTH = frozenset({10002, 10005, 10017, 20020, 20024, 20102})

HTTP_403_CODE = 403
"""Pseudo-code used for an HTTP 403 answer ("用户请求过快，IP被屏蔽")."""


@functools.cache
def error_table() -> dict[tuple[Transport, int], ErrorCode]:
    """Every documented code, keyed by ``(transport, code)``."""
    text = resources.files("recorder.venues.okex_v1").joinpath("data/error-codes.csv").read_text("utf-8")
    table: dict[tuple[Transport, int], ErrorCode] = {}
    for row in csv.DictReader(io.StringIO(text)):
        transport = Transport(row["transport"])
        raw = row["code"].strip()
        if raw.startswith("HTTP "):
            raw = raw.removeprefix("HTTP ")
        if not raw.lstrip("-").isdigit():
            continue  # "Request timed out (no ping)": described by the HTTP 403 entry
        code = int(raw)
        table[(transport, code)] = ErrorCode(transport, code, row["message_en"], row["message_zh"])
    return table


def lookup(code: int, transport: Transport) -> ErrorCode | None:
    """The documented entry for ``code`` on ``transport``, or None."""
    return error_table().get((transport, code))


def classify(code: int, transport: Transport) -> ErrorClass:
    """What to do about ``code``: retry later, back off, stop (auth/ban), or give up."""
    if transport is Transport.REST:
        if code == HTTP_403_CODE:
            return ErrorClass.BANNED
        if code in _REST_RATE_LIMITED:
            return ErrorClass.RATE_LIMITED
        if code in _REST_RETRY_LATER:
            return ErrorClass.RETRY_LATER
        if code in _REST_AUTH:
            return ErrorClass.AUTH
        return ErrorClass.BAD_REQUEST
    if code in _WS_RETRY_LATER:
        return ErrorClass.RETRY_LATER
    if code in _WS_AUTH:
        return ErrorClass.AUTH
    return ErrorClass.BAD_REQUEST


def exchange_error(code: int, transport: Transport, *, context: str = "") -> ExchangeError:
    """Build the typed, classified error for ``code`` on ``transport``.

    An undocumented code still names itself clearly. A few documented codes have
    only one of the two texts in the table; the other text then repeats it, so
    neither is ever empty. ``context`` (endpoint or channel) is carried along.
    """
    entry = lookup(code, transport)
    if entry is None:
        en = f"undocumented error code {code}"
        zh = f"未知错误码 {code}"
    else:
        en = entry.message_en or entry.message_zh
        zh = entry.message_zh or entry.message_en
    return ExchangeError(code, transport, en, zh, classify(code, transport), context=context)
