"""Storage's own rule for a partition key value (a symbol): safe as a file-path component.

Storage knows no venue's symbol rules (those are checked where symbols enter: the
configuration and each venue's channel names). It only needs a ``symbol`` value that
can become the directory ``symbol=<value>`` of a Parquet partition and a key in SQL:

* a string of at most the column's length (``symbol`` is ``String(32)``);
* lower-case ASCII letters and digits, ``_``, ``-`` and ``.``, starting with a letter or
  digit, with no ``..``: so never ``/``, ``\\``, NUL, ``=``, ``%``, spaces, quotes, ``.`` or
  ``..``. Lower case only, so that two values never share one directory on a
  case-insensitive filesystem (macOS, Windows).
"""

from __future__ import annotations

import re

from recorder.errors import SymbolError

__all__ = ["SYMBOL_LENGTH", "check_symbol"]

SYMBOL_LENGTH = 32  # the ``symbol`` column's length (recorder.storage.schema)
_PATH_SAFE = re.compile(r"[a-z0-9][a-z0-9_.-]*")


def check_symbol(value: object, *, length: int = SYMBOL_LENGTH) -> str:
    """Return ``value`` if it is safe as a path component and fits ``length`` characters.

    Raises :class:`~recorder.errors.SymbolError` (``malformed symbol '<value>': ...``).
    """
    if not isinstance(value, str):
        raise SymbolError(f"malformed symbol: must be a string, got {type(value).__name__}")
    if not _PATH_SAFE.fullmatch(value) or ".." in value:
        raise SymbolError(f"malformed symbol {value!r}: not safe as a file-path component (lower-case "
                          "letters, digits, '_', '-', '.'; starting with a letter or digit; no '..')")
    if len(value) > length:
        raise SymbolError(f"malformed symbol {value!r}: longer than {length} characters")
    return value
