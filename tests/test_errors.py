"""The one error tree (recorder.errors)."""

import pickle
from decimal import Decimal

import pytest

from recorder import errors
from recorder.errors import (
    BookError,
    ChannelError,
    ConfigError,
    CrossedBookError,
    DecodeError,
    ErrorClass,
    ExchangeError,
    IpBannedError,
    ProtocolError,
    RecorderError,
    SchemaNotAtHeadError,
    StorageError,
    StoreUnavailableError,
    SymbolError,
    Transport,
    TransportError,
    is_auth_failure,
    is_ban,
    is_rate_limit,
    is_retryable,
)


@pytest.mark.parametrize(
    ("cls", "parent"),
    [
        (ConfigError, RecorderError),
        (ProtocolError, RecorderError),
        (DecodeError, ProtocolError),
        (ChannelError, ProtocolError),
        (SymbolError, ChannelError),
        (BookError, RecorderError),
        (CrossedBookError, BookError),
        (ExchangeError, RecorderError),
        (TransportError, RecorderError),
        (IpBannedError, TransportError),
        (StorageError, RecorderError),
        (SchemaNotAtHeadError, StorageError),
        (StoreUnavailableError, StorageError),
    ],
)
def test_the_tree_drawn_in_the_docstring_is_the_real_tree(cls: type, parent: type) -> None:
    assert cls.__mro__[1] is parent
    assert cls.__name__ in (errors.__doc__ or "")


def test_decode_error_keeps_a_bounded_bytes_sample() -> None:
    assert DecodeError("bad", sample="é" * 3000).sample == ("é" * 1024).encode()
    assert DecodeError("bad", sample=b"x" * 5000).sample == b"x" * 2048
    assert DecodeError("bad").sample is None


def test_crossed_book_error_names_symbol_and_prices() -> None:
    error = CrossedBookError("bch_btc", Decimal("0.11"), Decimal("0.1"))
    assert str(error) == "crossed book for bch_btc: best bid 0.11 >= best ask 0.1"
    assert (error.symbol, error.best_bid, error.best_ask) == ("bch_btc", Decimal("0.11"), Decimal("0.1"))


def _exchange(cls: ErrorClass) -> ExchangeError:
    return ExchangeError(1, Transport.REST, "en", "zh", cls)


@pytest.mark.parametrize(
    ("error", "retryable", "auth", "ban", "rate"),
    [
        (_exchange(ErrorClass.RATE_LIMITED), True, False, False, True),
        (_exchange(ErrorClass.RETRY_LATER), True, False, False, False),
        (_exchange(ErrorClass.AUTH), False, True, False, False),
        (_exchange(ErrorClass.BANNED), False, False, True, False),
        (_exchange(ErrorClass.BAD_REQUEST), False, False, False, False),
        (TransportError("reset"), True, False, False, False),
        (IpBannedError("403"), False, False, True, False),
        (StoreUnavailableError("down"), True, False, False, False),
        (DecodeError("bad"), False, False, False, False),
        (ValueError("not ours"), False, False, False, False),
    ],
)
def test_classification_is_done_once_here(
    error: BaseException, retryable: bool, auth: bool, ban: bool, rate: bool
) -> None:
    assert (is_retryable(error), is_auth_failure(error), is_ban(error), is_rate_limit(error)) == (
        retryable,
        auth,
        ban,
        rate,
    )


def test_exchange_error_message_and_pickle_round_trip() -> None:
    error = ExchangeError(10007, Transport.REST, "Signature does not match", "签名不匹配", ErrorClass.AUTH,
                          context="userinfo.do")
    assert str(error) == "OKEx rest error 10007: Signature does not match (userinfo.do)"
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.code, copy.transport, copy.message_zh, copy.error_class, copy.context) == (
        10007, Transport.REST, "签名不匹配", ErrorClass.AUTH, "userinfo.do"
    )
