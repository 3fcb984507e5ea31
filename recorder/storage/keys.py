"""Storage's own rule for a partition value (a venue, a symbol): safe as a file-path component.

Storage knows no venue's symbol rules (those are checked where symbols enter: the
configuration and each venue's channel names). It only needs a value that can become the
directory ``<column>=<value>`` of a Parquet partition and a key in SQL:

* a string of at most the column's length (``symbol`` is ``String(32)``, ``venue`` ``String(16)``);
* ASCII letters and digits, ``_``, ``-`` and ``.``, starting with a letter or digit, with no
  ``..``: so never ``/``, ``\\``, NUL, ``=``, ``%``, spaces, quotes, ``.`` or ``..``.
  ``btc_usdt`` (v1) and ``BTC-USDT`` (v5) both pass. The venue is the partition level above
  the symbol, so two venues' spellings never share a directory.
"""

from __future__ import annotations

import re

from recorder.errors import SymbolError

__all__ = ["SYMBOL_LENGTH", "VENUE_LENGTH", "check_path_value", "check_symbol", "check_venue"]

SYMBOL_LENGTH = 32  # the ``symbol`` column's length (recorder.storage.datasets)
VENUE_LENGTH = 16  # the ``venue`` column's length
_PATH_SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def check_path_value(value: object, *, what: str = "symbol", length: int = SYMBOL_LENGTH) -> str:
    """Return ``value`` if it is safe as a path component and fits ``length`` characters.

    Raises :class:`~recorder.errors.SymbolError` (``malformed <what> '<value>': ...``).
    """
    if not isinstance(value, str):
        raise SymbolError(f"malformed {what}: must be a string, got {type(value).__name__}")
    if not _PATH_SAFE.fullmatch(value) or ".." in value:
        raise SymbolError(f"malformed {what} {value!r}: not safe as a file-path component (letters, "
                          "digits, '_', '-', '.'; starting with a letter or digit; no '..')")
    if len(value) > length:
        raise SymbolError(f"malformed {what} {value!r}: longer than {length} characters")
    return value


def check_symbol(value: object, *, length: int = SYMBOL_LENGTH) -> str:
    """:func:`check_path_value` for a ``symbol``."""
    return check_path_value(value, what="symbol", length=length)


def check_venue(value: object) -> str:
    """:func:`check_path_value` for a ``venue``."""
    return check_path_value(value, what="venue", length=VENUE_LENGTH)
