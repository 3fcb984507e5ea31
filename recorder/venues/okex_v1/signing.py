"""MD5 request signing (PROTOCOL.md "Signing"; the seed document's 参数签名).

1. every parameter except ``sign`` (``api_key`` included), 2. sorted by name,
byte-wise, 3. joined as ``name=value`` with ``&``, 4. ``&secret_key=<SECRET>``
appended, 5. MD5 of the UTF-8 bytes, hex digest in upper case.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping


def signing_payload(params: Mapping[str, str]) -> str:
    """The sorted ``name=value&...`` string without the secret (safe to log)."""
    items = sorted(
        ((k, v) for k, v in params.items() if k != "sign"), key=lambda kv: kv[0].encode("utf-8")
    )
    return "&".join(f"{k}={v}" for k, v in items)


def sign(params: Mapping[str, str], secret: str) -> str:
    """Return the upper-case MD5 ``sign`` for ``params`` (values signed exactly as sent)."""
    payload = f"{signing_payload(params)}&secret_key={secret}"
    return hashlib.md5(payload.encode("utf-8"), usedforsecurity=False).hexdigest().upper()


def signed_params(params: Mapping[str, str], api_key: str, secret: str) -> dict[str, str]:
    """``params`` plus ``api_key`` and ``sign``: what travels. The secret never does."""
    out = {k: v for k, v in params.items() if k != "sign"}
    out["api_key"] = api_key
    out["sign"] = sign(out, secret)
    return out


def verify(params: Mapping[str, str], secret: str) -> bool:
    """True when ``params['sign']`` matches (case-insensitively) the sign computed with ``secret``."""
    given = params.get("sign")
    return isinstance(given, str) and given.upper() == sign(params, secret)
