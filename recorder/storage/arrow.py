"""What every store and the writer share about a batch in Arrow form (no store of its own).

:func:`batch_to_table` builds a dataset's Arrow table from a :class:`~recorder.storage.schema.Batch`
once (the writer's journal, the Parquet store and the bus all use that one table);
:class:`PartialWriteError` is how a store says only part of a batch was made durable.
Kept apart from :mod:`recorder.storage.parquet` so that the generic writer and the bus
import no particular store.
"""

from __future__ import annotations

import pyarrow as pa

from recorder.errors import StorageError, StoreUnavailableError
from recorder.records import Record
from recorder.storage.schema import Batch, Dataset

__all__ = ["PartialWriteError", "batch_to_table"]


def batch_to_table(batch: Batch, dataset: Dataset) -> pa.Table:
    """The Arrow table of ``dataset``'s records in ``batch`` (built once per batch, then shared).

    Raises :class:`StorageError` for a value the schema cannot hold.
    """
    try:
        return batch.table(dataset.name)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, ValueError, TypeError) as exc:
        raise StorageError(f"{dataset.name}: value does not fit the Parquet schema: {exc}") from exc


class PartialWriteError(StoreUnavailableError):
    """Some datasets of a batch were made durable (acknowledged); ``unwritten`` were not."""

    def __init__(self, cause: StoreUnavailableError, unwritten: list[Record]) -> None:
        super().__init__(str(cause))
        self.unwritten = unwritten
