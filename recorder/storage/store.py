"""The one seam between the storage writer and a store: :class:`Store`.

A store is anything with a ``name``, ``write_batch(batch)`` and ``close()``; it may also say
whether it keeps up (``healthy``, ``last_error``). :class:`~recorder.storage.writer.StorageWriter`
takes any sequence of them (``StorageWriter(stores=[...])``) and gives each the same
:class:`~recorder.storage.schema.Batch` per flush, isolating a failing store from the others,
keeping per-store accounting and spilling what a store cannot take yet to the journal.
The SQL store (:mod:`recorder.storage.sql`), the Parquet store (:mod:`recorder.storage.parquet`)
and the message bus (:mod:`recorder.storage.bus`) are stores; a new one is one new file
(docs/storage.md, "Adding a store").

The contract of ``write_batch``:

* return only once the batch is durable in the store (or raise);
* raise :class:`~recorder.errors.StoreUnavailableError` when retrying later may work (nothing of
  the batch kept; :class:`~recorder.storage.arrow.PartialWriteError` lists what was not kept when
  part was), :class:`~recorder.errors.StorageError` (or ValueError/TypeError) for rows the store
  can never hold (the writer then isolates and quarantines them);
* be idempotent on the dataset's natural key (:mod:`recorder.storage.datasets`): the writer
  replays rows after an outage, and after a crash the same rows may come twice.

A batch made by :meth:`~recorder.storage.schema.Batch.from_table` (a replayed journal segment)
carries Arrow tables: use :meth:`~recorder.storage.schema.Batch.table` or
:meth:`~recorder.storage.schema.Batch.rows` rather than iterating records.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from recorder.records import Record

__all__ = ["Store", "store_name"]


@runtime_checkable
class Store(Protocol):
    """What the writer needs of a store (``SqlStore``, ``ParquetStore``, ``BusStore``, test fakes).

    Optional: ``name`` (str, default: the writer's slot name or the class name), ``healthy``
    (bool: False while the store is not keeping up although writes succeed, e.g. rows journaled
    but the Parquet root unwritable) and ``last_error`` (str | None).
    """

    def write_batch(self, records: Sequence[Record]) -> None: ...

    def close(self) -> None: ...


def store_name(store: object, default: str) -> str:
    """The store's ``name`` attribute, else ``default``."""
    name = getattr(store, "name", None)
    return name if isinstance(name, str) and name else default
