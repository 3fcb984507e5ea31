"""The writer process's wire format: records -> Arrow IPC per dataset -> the same records."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

from recorder.storage.process import decode_batch, encode_batch
from tests.fixtures.storage import sample_deal, sample_records


def _by_type(records: list[object]) -> dict[str, list[object]]:
    out: dict[str, list[object]] = {}
    for r in records:
        out.setdefault(type(r).__name__, []).append(r)
    return out


def test_every_dataset_crosses_as_arrow_ipc_and_comes_back_equal() -> None:
    records = sample_records()
    parts = encode_batch(records)
    assert {kind for _, kind, _ in parts} == {"arrow"}
    assert len({name for name, _, _ in parts}) == len(parts)  # one IPC stream per dataset
    assert _by_type(decode_batch(parts)) == _by_type(records)  # order kept within each dataset


def test_a_record_the_converter_refuses_travels_as_itself_for_the_screen_to_quarantine() -> None:
    bad = dataclasses.replace(sample_deal(2), price=Decimal("1." + "1" * 30))  # beyond decimal128(38, 18)
    records = [sample_deal(1), bad, sample_deal(3)]
    parts = encode_batch(records)
    assert [(name, kind) for name, kind, _ in parts] == [("deals", "pickle")]
    assert decode_batch(parts) == records
