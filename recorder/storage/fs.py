"""Where Parquet files live: a local directory or S3-compatible object storage, on :mod:`pyarrow.fs`.

:func:`resolve` turns a Parquet root into ``(pyarrow FileSystem, base path)``:

* a local path (``data/parquet``) -> :class:`pyarrow.fs.LocalFileSystem` and the absolute path;
* ``s3://bucket/prefix`` -> :class:`pyarrow.fs.S3FileSystem` and ``bucket/prefix``. The
  endpoint comes from ``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL`` (e.g.
  ``http://127.0.0.1:9000`` for MinIO; unset: AWS), the region from ``AWS_REGION`` or
  ``AWS_DEFAULT_REGION`` (unset: the AWS SDK's own lookup), the credentials from the AWS SDK's
  standard chain (``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` / ``AWS_SESSION_TOKEN``,
  ``AWS_PROFILE`` and ``~/.aws/credentials`` / ``~/.aws/config``, instance metadata). This
  module never reads, holds or prints a credential: the SDK does.
* another URI pyarrow understands -> :meth:`pyarrow.fs.FileSystem.from_uri`.

The helpers write and delete the same way on both kinds:

* :class:`StagedFile`: a file that appears complete under its final path or not at all.
  Local: written as ``.<name>.tmp`` beside it, fsync'd, renamed, directory fsync'd. Object
  storage: the bytes are built in memory and uploaded under the final key in one go (an S3
  object is invisible until its upload completes, so that is atomic; no temporary object, no
  copy-then-delete "rename"). A failure before :meth:`StagedFile.publish` leaves nothing.
* :func:`create_dir`: a directory on a local disk; nothing on object storage (it has no
  directories, and pyarrow's "directory marker" objects ``prefix/`` break s3fs-based readers
  such as ``pandas.read_parquet("s3://…")``).
* :func:`delete_file`: pyarrow's S3 ``delete_file`` re-creates a marker for the parent
  "directory"; on S3 the object is deleted through s3fs instead (the ``s3`` extra).
"""

from __future__ import annotations

import functools
import os
import urllib.parse
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs

from recorder.errors import ConfigError

__all__ = [
    "TMP_PREFIX",
    "TMP_SUFFIX",
    "StagedFile",
    "create_dir",
    "delete_file",
    "is_dir",
    "is_local",
    "is_object_store_uri",
    "resolve",
    "s3_endpoint",
    "writes_in_place",
]

TMP_PREFIX = "."  # hidden while being written (local file systems)
TMP_SUFFIX = ".tmp"  # and not matching "*.parquet"

OBJECT_STORE_SCHEMES = ("s3",)


def is_object_store_uri(root: object) -> bool:
    """True for a string naming object storage (``s3://bucket/prefix``)."""
    return isinstance(root, str) and root.split("://", 1)[0].lower() in OBJECT_STORE_SCHEMES and "://" in root


def s3_endpoint() -> tuple[str | None, str | None, str | None]:
    """``(endpoint "host:port", scheme, region)`` from the environment; None where unset.

    ``AWS_ENDPOINT_URL_S3`` wins over ``AWS_ENDPOINT_URL`` (as in the AWS SDKs). Raises
    :class:`ConfigError` for an endpoint that is not an ``http(s)://host[:port]`` URL.
    """
    url = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or None
    if url is None:
        return None, None, region
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.password:
        raise ConfigError("AWS_ENDPOINT_URL must be http(s)://host[:port] (no user or password in it)")
    return parts.netloc, parts.scheme, region


def _s3_filesystem() -> pafs.S3FileSystem:
    endpoint, scheme, region = s3_endpoint()
    options: dict[str, Any] = {}
    if endpoint is not None:
        options.update(endpoint_override=endpoint, scheme=scheme)
    if region is not None:
        options["region"] = region
    return pafs.S3FileSystem(**options)


def resolve(root: str | os.PathLike[str],
            filesystem: pafs.FileSystem | None = None) -> tuple[pafs.FileSystem, str]:
    """``(file system, base path without a trailing slash)`` for a Parquet root.

    ``filesystem`` given: ``root`` is a path on it. ``s3://bucket/prefix``: see the module
    docstring. Raises :class:`ConfigError` for an ``s3://`` URI without a bucket.
    """
    text = os.fspath(root)
    if filesystem is not None:
        return filesystem, text.rstrip("/")
    if is_object_store_uri(text):
        path = text.split("://", 1)[1].strip("/")
        if "?" in path:
            raise ConfigError(f"{text.split('?', 1)[0]!r}: no ?parameters in an s3:// root; the endpoint and "
                              "region come from AWS_ENDPOINT_URL / AWS_REGION (see docs/storage.md)")
        if not path:
            raise ConfigError(f"{text!r}: an s3:// Parquet root needs a bucket: s3://bucket[/prefix]")
        return _s3_filesystem(), path
    if "://" in text:
        fs, path = pafs.FileSystem.from_uri(text)
        return fs, path.rstrip("/")
    return pafs.LocalFileSystem(), os.path.abspath(text)


def is_local(fs: pafs.FileSystem) -> bool:
    """True for the local file system (fsync and rename apply)."""
    return isinstance(fs, pafs.LocalFileSystem)


def writes_in_place(fs: pafs.FileSystem) -> bool:
    """True for object storage: files are uploaded under their final keys, no temporaries exist."""
    return isinstance(fs, pafs.S3FileSystem)


def is_dir(fs: pafs.FileSystem, path: str) -> bool:
    """True if ``path`` is a directory (object storage: at least one key starts with ``path/``)."""
    return fs.get_file_info(path).type == pafs.FileType.Directory


def create_dir(fs: pafs.FileSystem, path: str) -> None:
    """Create ``path`` and its parents on a local file system; nothing on object storage."""
    if not isinstance(fs, pafs.S3FileSystem):
        fs.create_dir(path, recursive=True)


def delete_file(fs: pafs.FileSystem, path: str) -> None:
    """Delete one file; on S3 without leaving a directory marker behind (needs s3fs).

    Raises OSError untranslated (locally FileNotFoundError if it does not exist; deleting a
    missing S3 object is no error).
    """
    if not isinstance(fs, pafs.S3FileSystem):
        fs.delete_file(path)
        return
    _s3fs().rm_file(path)


def _s3fs() -> Any:
    try:
        import s3fs  # type: ignore[import-untyped, unused-ignore]
    except ImportError:  # pragma: no cover - the s3 extra is part of dev
        raise ConfigError("deleting objects on S3 needs s3fs: pip install 'okex-recorder[s3]'") from None
    return _s3fs_for(s3fs.S3FileSystem, *s3_endpoint())


@functools.lru_cache(maxsize=4)
def _s3fs_for(factory: Any, endpoint: str | None, scheme: str | None, region: str | None) -> Any:
    client: dict[str, Any] = {}
    if endpoint is not None:
        client["endpoint_url"] = f"{scheme}://{endpoint}"
    if region is not None:
        client["region_name"] = region
    # Credentials: botocore's chain (environment, ~/.aws, instance metadata), refreshed by it.
    return factory(client_kwargs=client, skip_instance_cache=True, use_listings_cache=False)


class StagedFile:
    """One file that appears complete under ``final_path`` or not at all; write to :attr:`sink`.

    Call :meth:`publish` after closing what writes into :attr:`sink` (e.g. a ParquetWriter).
    Local file systems: ``sink`` is ``.<name>.tmp`` in the final directory (created);
    ``publish`` fsyncs it (``fsync``), renames it and fsyncs the directory; a failure leaves
    the temporary file (start-up deletes it). Object storage: ``sink`` is an in-memory buffer
    (the file's encoded bytes, i.e. its compressed size) and ``publish`` uploads it under the
    final key; a failure leaves nothing. Raises OSError / pyarrow errors untranslated.
    """

    __slots__ = ("_fs", "_fsync", "directory", "final", "path", "sink")

    def __init__(self, fs: pafs.FileSystem, final_path: str, *, fsync: bool = True) -> None:
        self._fs = fs
        self._fsync = fsync
        self.final = final_path
        self.directory, name = final_path.rsplit("/", 1)
        self.sink: Any
        if isinstance(fs, pafs.S3FileSystem):
            self.path = final_path
            self.sink = pa.BufferOutputStream()
        else:
            self.path = f"{self.directory}/{TMP_PREFIX}{name}{TMP_SUFFIX}"
            create_dir(fs, self.directory)
            self.sink = fs.open_output_stream(self.path)

    def publish(self) -> None:
        """Make the finished file visible under its final path (closes :attr:`sink` if open)."""
        if isinstance(self._fs, pafs.S3FileSystem):
            data = self.sink.getvalue()
            self.sink = None
            with self._fs.open_output_stream(self.final) as out:  # invisible until this completes
                out.write(data)
            return
        if not self.sink.closed:
            self.sink.close()
        local = self._fsync and is_local(self._fs)
        if local:
            _fsync_path(self.path)
        self._fs.move(self.path, self.final)
        if local:
            _fsync_path(self.directory)


def _fsync_path(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
