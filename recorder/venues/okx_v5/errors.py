"""The documented OKX v5 error codes with their texts, classified (PROTOCOL.md §7.2, §7.3).

:func:`exchange_error` turns a code into the project's
:class:`~recorder.errors.ExchangeError` (``message_en`` = the documented text,
``message_zh`` = the same text: v5 documents English only; the server's own
``msg`` travels in ``context``). Classes: retry later, rate limited, auth
failure (stop and alert), bad request (do not retry).
"""

from __future__ import annotations

from dataclasses import dataclass

from recorder.errors import ErrorClass, ExchangeError, Transport

__all__ = ["CODES", "V5ErrorCode", "classify", "exchange_error", "likely_cause", "lookup"]


@dataclass(frozen=True, slots=True)
class V5ErrorCode:
    """One documented code (§7.3): its HTTP status (None for WebSocket codes), text and class."""

    code: int
    http_status: int | None
    text: str
    error_class: ErrorClass


_R, _L, _A, _B = ErrorClass.RETRY_LATER, ErrorClass.RATE_LIMITED, ErrorClass.AUTH, ErrorClass.BAD_REQUEST

CODES: dict[int, V5ErrorCode] = {
    c.code: c
    for c in (
        V5ErrorCode(1, 200, "operation failed", _B),
        V5ErrorCode(2, 200, "batch operation partly succeeded", _B),
        V5ErrorCode(50001, 503, "service temporarily unavailable", _R),
        V5ErrorCode(50004, 400, "endpoint request timeout (outcome unknown)", _R),
        V5ErrorCode(50011, 429, "rate limit reached / too many requests", _L),
        V5ErrorCode(50013, 429, "system busy", _R),
        V5ErrorCode(50014, 400, "parameter can not be empty", _B),
        V5ErrorCode(50026, 500, "system error", _R),
        V5ErrorCode(50030, 200, "no permission for this endpoint", _A),
        V5ErrorCode(50101, 401, "API key does not match environment (live key on demo or the reverse)", _A),
        V5ErrorCode(50102, 401, "timestamp request expired", _A),
        V5ErrorCode(50103, 401, "header OK-ACCESS-KEY missing", _A),
        V5ErrorCode(50104, 401, "header OK-ACCESS-PASSPHRASE missing", _A),
        V5ErrorCode(50105, 401, "OK-ACCESS-PASSPHRASE incorrect", _A),
        V5ErrorCode(50106, 401, "header OK-ACCESS-SIGN missing", _A),
        V5ErrorCode(50107, 401, "header OK-ACCESS-TIMESTAMP missing", _A),
        V5ErrorCode(50110, 401, "IP not in the key's whitelist", _A),
        V5ErrorCode(50111, 401, "invalid OK-ACCESS-KEY", _A),
        V5ErrorCode(50112, 401, "invalid OK-ACCESS-TIMESTAMP", _A),
        V5ErrorCode(50113, 401, "invalid signature", _A),
        V5ErrorCode(50114, 401, "invalid authorization", _A),
        V5ErrorCode(50120, 200, "API key lacks permission for this function", _A),
        V5ErrorCode(51000, 400, "parameter error", _B),
        V5ErrorCode(51001, 200, "instrument id does not exist", _B),
        V5ErrorCode(51603, 200, "order does not exist", _B),
        V5ErrorCode(60004, None, "invalid timestamp (login)", _A),
        V5ErrorCode(60005, None, "invalid apiKey", _A),
        V5ErrorCode(60006, None, "timestamp expired (login)", _A),
        V5ErrorCode(60007, None, "invalid sign", _A),
        V5ErrorCode(60008, None, "this URL does not serve that channel", _B),
        V5ErrorCode(60009, None, "login failed", _A),
        V5ErrorCode(60011, None, "please log in (private channel without login)", _B),
        V5ErrorCode(60012, None, "invalid request (bad JSON or keys)", _B),
        V5ErrorCode(60013, None, "invalid args", _B),
        V5ErrorCode(60014, None, "requests too frequent", _L),
        V5ErrorCode(60018, None, "wrong URL, or channel/instId does not exist", _B),
        V5ErrorCode(60019, None, "invalid op", _B),
        V5ErrorCode(60024, None, "wrong passphrase", _A),
        V5ErrorCode(60031, None, "repeated login on one connection", _B),
        V5ErrorCode(60032, None, "API key does not exist", _A),
        V5ErrorCode(64001, None, "channel moved to /business", _B),
        V5ErrorCode(64002, None, "channel not available on /business", _B),
        V5ErrorCode(64003, None, "fee tier too low for this channel", _B),
        V5ErrorCode(64004, None, "books-l2-tbt conflicts with another book channel for the instId", _B),
        V5ErrorCode(64007, None, "internal error, retry", _R),
        V5ErrorCode(64008, None, "connection closes soon for a service upgrade", _R),
    )
}
"""Every code of PROTOCOL.md §7.3, keyed by code (REST and WebSocket codes do not overlap in v5)."""

_CAUSES = {
    50101: "the API key belongs to the other environment (a live key on demo trading, or the reverse)",
    50102: "the local clock is off: the request timestamp is outside the server's window",
    50105: "the passphrase is wrong (OKX_API_PASSPHRASE / the credentials file)",
    50110: "this machine's IP is not in the API key's IP whitelist",
    50111: "the API key is wrong or was deleted (OKX_API_KEY / the credentials file)",
    50113: "the signature is invalid: most likely the secret key is wrong (OKX_API_SECRET)",
    60005: "the API key is wrong (OKX_API_KEY)",
    60007: "the signature is invalid: most likely the secret key is wrong (OKX_API_SECRET)",
    60024: "the passphrase is wrong (OKX_API_PASSPHRASE)",
    60032: "the API key does not exist (OKX_API_KEY)",
}


def lookup(code: int) -> V5ErrorCode | None:
    """The documented entry for ``code`` (§7.3), or None."""
    return CODES.get(code)


def classify(code: int, http_status: int | None = None) -> ErrorClass:
    """What to do about ``code`` (§7.3 "Classify"). Undocumented codes: HTTP 429 → rate limited,
    HTTP 5xx → retry later, anything else → bad request."""
    entry = CODES.get(code)
    if entry is not None:
        return entry.error_class
    if http_status == 429:
        return _L
    if http_status is not None and http_status >= 500:
        return _R
    return _B


def likely_cause(code: int) -> str | None:
    """One sentence naming the likely cause of an auth failure (§7.3: 50105, 50111, 50113, ...), or None.

    Never contains a secret: it names the setting, not its value.
    """
    return _CAUSES.get(code)


def exchange_error(
    code: int | str, transport: Transport, *, msg: str = "", http_status: int | None = None, context: str = ""
) -> ExchangeError:
    """The typed, classified error for ``code`` (§7.3; a string such as ``"50113"`` or an int, §4.0).

    ``msg`` (the server's text) and ``context`` (endpoint or channel) are carried in
    ``context``; an undocumented code names itself. A non-numeric code becomes -1.
    """
    try:
        n = int(code)
    except (TypeError, ValueError):
        n = -1
    entry = CODES.get(n)
    text = entry.text if entry is not None else f"undocumented error code {code}"
    where = "; ".join(p for p in (context, f"server said: {msg}" if msg else "") if p)
    cause = likely_cause(n)
    if cause:
        where = f"{where}; likely cause: {cause}" if where else f"likely cause: {cause}"
    return ExchangeError(n, transport, text, text, classify(n, http_status), context=where)
