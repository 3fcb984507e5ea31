"""Credentials: environment, owner-only file, masking."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest

from recorder.credentials import (
    Credentials,
    load_credentials,
    mask,
    read_credentials_file,
    require_credentials,
)
from recorder.errors import ConfigError

API_KEY = "c821db84-6fbd-11e4-a9e3-c86000d26d7c"
SECRET = "S3CR3T-never-shown-0123456789"


def _write(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text, "utf-8")
    path.chmod(mode)
    return path


def test_repr_and_str_mask_the_api_key_and_hide_the_secret() -> None:
    creds = Credentials(API_KEY, SECRET)
    for text in (repr(creds), str(creds), f"{creds}", repr([creds])):
        assert SECRET not in text
        assert API_KEY not in text
        assert "c821…6d7c" in text
    assert creds.masked_api_key == "c821…6d7c"
    assert mask("short") == "…"


def test_credentials_survive_pickling_unchanged() -> None:
    creds = Credentials(API_KEY, SECRET)
    assert pickle.loads(pickle.dumps(creds)) == creds


def test_environment_variables_win() -> None:
    env = {"OKEX_API_KEY": API_KEY, "OKEX_SECRET_KEY": SECRET}
    assert load_credentials(environ=env) == Credentials(API_KEY, SECRET)


def test_only_one_environment_variable_is_an_error_naming_the_other() -> None:
    with pytest.raises(ConfigError, match="OKEX_API_KEY is set but OKEX_SECRET_KEY is not"):
        load_credentials(environ={"OKEX_API_KEY": API_KEY})
    with pytest.raises(ConfigError, match="OKEX_SECRET_KEY is set but OKEX_API_KEY is not") as info:
        load_credentials(environ={"OKEX_SECRET_KEY": SECRET})
    assert SECRET not in str(info.value)


def test_nothing_configured_gives_none_or_a_clear_error() -> None:
    assert load_credentials(environ={}) is None
    with pytest.raises(ConfigError, match="no API credentials: set OKEX_API_KEY and OKEX_SECRET_KEY"):
        require_credentials(environ={})


def test_owner_only_file_named_by_the_environment(tmp_path: Path) -> None:
    path = _write(tmp_path / "creds.toml", f'api_key = "{API_KEY}"\nsecret_key = "{SECRET}"\n')
    assert load_credentials(environ={"OKEX_CREDENTIALS_FILE": str(path)}) == Credentials(API_KEY, SECRET)
    assert load_credentials(path, environ={}) == Credentials(API_KEY, SECRET)


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620])
def test_file_readable_by_others_is_rejected_with_chmod_advice(tmp_path: Path, mode: int) -> None:
    path = _write(tmp_path / "creds.toml", f'api_key = "{API_KEY}"\nsecret_key = "{SECRET}"\n', mode)
    with pytest.raises(ConfigError) as info:
        read_credentials_file(path)
    assert f"chmod 600 {path}" in str(info.value)
    assert SECRET not in str(info.value)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (f'api_key = "{API_KEY}"\n', "missing secret_key"),
        (f'api_key = "{API_KEY}"\nsecret_key = "{SECRET}"\nsecret = "x"\n', "unknown key"),
        (f'api_key = "{API_KEY}"\nsecret_key = {SECRET}\n', "not valid TOML"),
        (f'api_key = "{API_KEY}"\nsecret_key = ""\n', "secret key is empty"),
        (f'api_key = "{API_KEY}"\nsecret_key = 5\n', "must be strings"),
    ],
)
def test_bad_file_contents_are_named_without_quoting_the_secret(
    tmp_path: Path, text: str, match: str
) -> None:
    path = _write(tmp_path / "creds.toml", text)
    with pytest.raises(ConfigError, match=match) as info:
        read_credentials_file(path)
    assert SECRET not in str(info.value)
    assert info.value.__cause__ is None


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_credentials(environ={"OKEX_CREDENTIALS_FILE": str(tmp_path / "nope.toml")})


def test_whitespace_in_a_key_is_rejected() -> None:
    with pytest.raises(ConfigError, match="api key contains whitespace"):
        Credentials(API_KEY + "\n", SECRET)
