"""API credentials (api key + secret key) from the environment or an owner-only file.

The secret signs requests (:mod:`recorder.venues.okex_v1.signing`) and never travels, and it
never appears in a log line, repr, exception or row: :class:`Credentials` masks
itself, and nothing in this module formats the secret (or a file's contents) into
a message.

Where credentials come from, first match wins (:func:`load_credentials`):

1. ``OKEX_API_KEY`` and ``OKEX_SECRET_KEY`` in the environment (both, or an error);
2. the TOML file named by ``OKEX_CREDENTIALS_FILE``;
3. the TOML file named by the configuration (``[poller] credentials_file``).

A credentials file holds exactly two keys, ``api_key`` and ``secret_key``, and
must be readable by its owner only (``chmod 600``); otherwise it is rejected with
a :class:`~recorder.errors.ConfigError`.
"""

from __future__ import annotations

import os
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from recorder.errors import ConfigError

__all__ = [
    "ENV_API_KEY",
    "ENV_CREDENTIALS_FILE",
    "ENV_SECRET_KEY",
    "Credentials",
    "load_credentials",
    "mask",
    "read_credentials_file",
    "require_credentials",
]

ENV_API_KEY = "OKEX_API_KEY"
ENV_SECRET_KEY = "OKEX_SECRET_KEY"
ENV_CREDENTIALS_FILE = "OKEX_CREDENTIALS_FILE"

_FILE_KEYS = frozenset({"api_key", "secret_key"})


def mask(value: str) -> str:
    """``c821db84-…-c86000d26d7c`` -> ``c821…6d7c``; short values become ``…``."""
    if len(value) < 12:
        return "…"
    return f"{value[:4]}…{value[-4:]}"


@dataclass(frozen=True, slots=True)
class Credentials:
    """An OKEx v1 API key and its secret. ``repr``/``str`` show the key masked, never the secret."""

    api_key: str = field(repr=False)
    secret: str = field(repr=False)

    def __post_init__(self) -> None:
        for name, value in (("api key", self.api_key), ("secret key", self.secret)):
            if not isinstance(value, str) or not value.strip():
                raise ConfigError(f"the {name} is empty")
            if value != value.strip() or any(c in value for c in "\r\n\t "):
                raise ConfigError(f"the {name} contains whitespace")

    @property
    def masked_api_key(self) -> str:
        """The api key masked for display, e.g. ``c821…6d7c``."""
        return mask(self.api_key)

    def __repr__(self) -> str:
        return f"Credentials(api_key={self.masked_api_key!r}, secret='***')"

    __str__ = __repr__


def read_credentials_file(path: str | os.PathLike[str]) -> Credentials:
    """Read ``api_key`` and ``secret_key`` from the TOML file at ``path``.

    Raises :class:`ConfigError` when the file is missing, not owned by the current
    user, readable or writable by group/others (the message says ``chmod 600``),
    not valid TOML, or does not hold exactly those two string keys. The file's
    contents are never quoted in the error.
    """
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise ConfigError(f"credentials file {p} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"credentials file {p} cannot be read: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"credentials file {p} is not a regular file")
    if os.name == "posix":
        if st.st_mode & 0o077:
            raise ConfigError(
                f"credentials file {p} is accessible by group or others "
                f"(mode {stat.S_IMODE(st.st_mode):04o}); run `chmod 600 {p}`"
            )
        if st.st_uid != os.getuid():
            raise ConfigError(f"credentials file {p} is not owned by the current user")
    try:
        data = tomllib.loads(p.read_text("utf-8"))
    except (OSError, UnicodeDecodeError):
        raise ConfigError(f"credentials file {p} cannot be read as UTF-8 text") from None
    except tomllib.TOMLDecodeError:
        # The decoder's message may quote the offending text: keep it out.
        raise ConfigError(f"credentials file {p} is not valid TOML") from None
    unknown = sorted(set(data) - _FILE_KEYS)
    if unknown:
        raise ConfigError(
            f"credentials file {p}: unknown key(s) {', '.join(unknown)}; expected api_key and secret_key"
        )
    missing = sorted(_FILE_KEYS - set(data))
    if missing:
        raise ConfigError(f"credentials file {p}: missing {', '.join(missing)}")
    api_key, secret = data["api_key"], data["secret_key"]
    if not isinstance(api_key, str) or not isinstance(secret, str):
        raise ConfigError(f"credentials file {p}: api_key and secret_key must be strings")
    try:
        return Credentials(api_key, secret)
    except ConfigError as exc:
        raise ConfigError(f"credentials file {p}: {exc}") from None


def load_credentials(
    config_file: str | os.PathLike[str] | None = None, *, environ: Mapping[str, str] | None = None
) -> Credentials | None:
    """Find the credentials (environment, ``OKEX_CREDENTIALS_FILE``, then ``config_file``).

    Returns None when none are configured (``okex-recorder run`` then runs without
    the poller). Raises :class:`ConfigError` when they are configured but wrong:
    only one of the two environment variables set, or a bad file.
    """
    env = os.environ if environ is None else environ
    api_key = env.get(ENV_API_KEY, "")
    secret = env.get(ENV_SECRET_KEY, "")
    if api_key or secret:
        if not (api_key and secret):
            given, absent = (ENV_API_KEY, ENV_SECRET_KEY) if api_key else (ENV_SECRET_KEY, ENV_API_KEY)
            raise ConfigError(f"{given} is set but {absent} is not: set both, or neither")
        try:
            return Credentials(api_key, secret)
        except ConfigError as exc:
            raise ConfigError(f"{ENV_API_KEY}/{ENV_SECRET_KEY}: {exc}") from None
    env_file = env.get(ENV_CREDENTIALS_FILE, "")
    if env_file:
        return read_credentials_file(env_file)
    if config_file is not None and str(config_file):
        return read_credentials_file(config_file)
    return None


def require_credentials(
    config_file: str | os.PathLike[str] | None = None, *, environ: Mapping[str, str] | None = None
) -> Credentials:
    """Like :func:`load_credentials`, but a missing configuration is a :class:`ConfigError` too."""
    creds = load_credentials(config_file, environ=environ)
    if creds is None:
        raise ConfigError(
            f"no API credentials: set {ENV_API_KEY} and {ENV_SECRET_KEY}, or name an owner-only "
            f"TOML file (api_key, secret_key) in {ENV_CREDENTIALS_FILE} or [poller] credentials_file"
        )
    return creds
