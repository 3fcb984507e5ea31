"""The one error tree of okex-recorder.

Every error the project raises on purpose is a :class:`RecorderError`::

    RecorderError
    ├── ConfigError                 bad configuration key/value, bad CLI input
    ├── ProtocolError               what the exchange sent cannot be understood
    │   ├── DecodeError             bad JSON, bad DEFLATE data, wrong types, missing fields
    │   └── ChannelError            malformed/unknown channel name
    │       └── SymbolError         malformed/unknown symbol
    ├── BookError                   order-book invariant broken
    │   ├── CrossedBookError        best bid >= best ask
    │   ├── SequenceGapError        OKX v5: prevSeqId does not link to the last seqId
    │   └── ChecksumMismatchError   OKX v5: a non-zero book checksum does not match
    ├── ExchangeError               the exchange answered with a documented error code
    ├── TransportError              network failure, timeout, HTTP 5xx, closed socket
    │   └── IpBannedError           HTTP 403: the IP is banned for a while
    └── StorageError                a store failed
        ├── SchemaNotAtHeadError    the SQL schema needs ``okex-recorder db upgrade``
        └── StoreUnavailableError   the database / the Parquet root cannot be written now

Classify once with :func:`is_retryable`, :func:`is_auth_failure`, :func:`is_ban`
and :func:`is_rate_limit` instead of catching broad exceptions all over the code.
Messages never contain secrets: nothing in this module formats a request's
parameters, only codes and documented texts.
"""

from __future__ import annotations

import enum


class RecorderError(Exception):
    """Base of every error okex-recorder raises on purpose."""


class ConfigError(RecorderError):
    """A configuration key or value (file, environment, command line) is wrong."""


class ProtocolError(RecorderError):
    """Something received from the exchange cannot be understood."""


class DecodeError(ProtocolError):
    """A frame or response is malformed: bad JSON, bad DEFLATE data, wrong types, missing fields.

    ``sample`` holds (a prefix of) the offending payload for quarantine and logs.
    """

    def __init__(self, message: str, sample: bytes | str | None = None) -> None:
        super().__init__(message)
        if isinstance(sample, str):
            sample = sample.encode("utf-8", "replace")
        self.sample: bytes | None = sample[:2048] if sample is not None else None


class ChannelError(ProtocolError):
    """A channel name is malformed or names a channel kind this project does not know."""


class SymbolError(ChannelError):
    """A symbol is malformed (not ``base_quote`` in lower case) or not a known pair."""


class BookError(RecorderError):
    """An order-book invariant is broken."""


class CrossedBookError(BookError):
    """Best bid >= best ask: the book is not valid and must be rebuilt, never stored."""

    def __init__(self, symbol: str, best_bid: object, best_ask: object) -> None:
        super().__init__(f"crossed book for {symbol}: best bid {best_bid} >= best ask {best_ask}")
        self.symbol = symbol
        self.best_bid = best_bid
        self.best_ask = best_ask


class SequenceGapError(BookError):
    """OKX v5 book: an update's ``prevSeqId`` is not the last ``seqId`` (or no snapshot yet)."""

    def __init__(self, inst_id: str, expected: int | None, prev_seq_id: int, seq_id: int) -> None:
        super().__init__(
            f"sequence gap for {inst_id}: prevSeqId {prev_seq_id} (seqId {seq_id}), "
            f"expected prevSeqId {expected if expected is not None else 'none (no snapshot yet)'}"
        )
        self.inst_id = inst_id
        self.expected = expected
        self.prev_seq_id = prev_seq_id
        self.seq_id = seq_id


class ChecksumMismatchError(BookError):
    """OKX v5 book: the exchange's non-zero CRC32 checksum differs from the local book's."""

    def __init__(self, inst_id: str, expected: int, computed: int, seq_id: int | None) -> None:
        super().__init__(
            f"checksum mismatch for {inst_id} at seqId {seq_id}: exchange {expected}, local {computed}"
        )
        self.inst_id = inst_id
        self.expected = expected
        self.computed = computed
        self.seq_id = seq_id


class ErrorClass(enum.Enum):
    """What a caller should do about an exchange error."""

    RATE_LIMITED = "rate_limited"  # back off, then retry
    RETRY_LATER = "retry_later"  # transient server-side failure: retry with backoff
    AUTH = "auth"  # wrong key / secret / permission: do not retry
    BANNED = "banned"  # IP banned (HTTP 403): stop all calls for the ban period
    BAD_REQUEST = "bad_request"  # the request itself is wrong: retrying will not help


class Transport(enum.Enum):
    """The two error-code tables: REST and WebSocket codes mean different things."""

    REST = "rest"
    WEBSOCKET = "websocket"


class ExchangeError(RecorderError):
    """The exchange answered with a documented (or undocumented) error code.

    Built by :func:`recorder.venues.okex_v1.errors.exchange_error`, which looks the code
    up in the documented table for its transport.
    """

    def __init__(
        self,
        code: int,
        transport: Transport,
        message_en: str,
        message_zh: str,
        error_class: ErrorClass,
        *,
        context: str = "",
    ) -> None:
        where = f" ({context})" if context else ""
        super().__init__(f"OKEx {transport.value} error {code}: {message_en}{where}")
        self.code = code
        self.transport = transport
        self.message_en = message_en
        self.message_zh = message_zh
        self.error_class = error_class
        self.context = context

    def __reduce__(self) -> tuple[object, ...]:
        return (
            _rebuild_exchange_error,
            (self.code, self.transport, self.message_en, self.message_zh, self.error_class,
             self.context),
        )


def _rebuild_exchange_error(
    code: int, transport: Transport, en: str, zh: str, cls: ErrorClass, context: str
) -> ExchangeError:
    return ExchangeError(code, transport, en, zh, cls, context=context)


class TransportError(RecorderError):
    """The network failed: refused, reset, timed out, HTTP 5xx, socket closed."""


class IpBannedError(TransportError):
    """HTTP 403 (or no answer at all): the exchange banned this IP for a while."""


class StorageError(RecorderError):
    """A store (SQL database or Parquet root) failed."""


class SchemaNotAtHeadError(StorageError):
    """The SQL schema is not at the newest migration; ``okex-recorder db upgrade`` fixes it."""


class StoreUnavailableError(StorageError):
    """A store cannot be written right now (database down, disk full, root unwritable)."""


def is_rate_limit(exc: BaseException) -> bool:
    """True for REST 10001 (request frequency too high)."""
    return isinstance(exc, ExchangeError) and exc.error_class is ErrorClass.RATE_LIMITED


def is_ban(exc: BaseException) -> bool:
    """True when the exchange banned this IP (HTTP 403)."""
    return isinstance(exc, IpBannedError) or (
        isinstance(exc, ExchangeError) and exc.error_class is ErrorClass.BANNED
    )


def is_auth_failure(exc: BaseException) -> bool:
    """True for authentication problems (wrong key, wrong secret, missing permission)."""
    return isinstance(exc, ExchangeError) and exc.error_class is ErrorClass.AUTH


def is_retryable(exc: BaseException) -> bool:
    """True when trying again later (with the shared backoff) may succeed.

    Rate limits, transient server errors and network failures are retryable;
    authentication failures, bans (handled separately) and bad requests are not.
    """
    if isinstance(exc, IpBannedError):
        return False
    if isinstance(exc, TransportError | StoreUnavailableError):
        return True
    return isinstance(exc, ExchangeError) and exc.error_class in (
        ErrorClass.RATE_LIMITED,
        ErrorClass.RETRY_LATER,
    )
