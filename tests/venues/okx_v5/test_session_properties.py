"""Property: whatever the exchange drops, the session's book is either absent or equal to the truth.

A model exchange keeps a true book and a linked seqId chain (PROTOCOL.md §3.2), with heartbeats
and sequence resets; hypothesis chooses which pushes reach the session. After every frame: a
valid session book equals the exchange's book, each break gives exactly one BookGap and one
unsubscribe + subscribe, and nothing but discards happen until the next snapshot.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from hypothesis import event, given, settings
from hypothesis import strategies as st

from recorder.venues.okx_v5.book import Scale
from recorder.venues.okx_v5.channels import UrlKind
from recorder.venues.okx_v5.records import BookGap, BookSnapshot, BookUpdate
from recorder.venues.okx_v5.session import V5Session

T0 = datetime(2026, 11, 30, tzinfo=UTC)

step_st = st.one_of(
    st.tuples(st.just("update"), st.integers(1, 30), st.integers(0, 3), st.booleans(), st.booleans()),
    st.tuples(st.just("heartbeat"), st.just(0), st.just(0), st.just(True), st.just(False)),
    st.tuples(st.just("reset"), st.integers(1, 30), st.integers(1, 3), st.just(True), st.just(False)),
    st.tuples(st.just("snapshot"), st.just(0), st.just(0), st.just(True), st.just(False)),
)


def frame(action: str, bids: list[list[str]], asks: list[list[str]], prev: int, seq: int) -> str:
    return json.dumps(
        {
            "arg": {"channel": "books", "instId": "BTC-USDT"},
            "action": action,
            "data": [
                {
                    "bids": bids,
                    "asks": asks,
                    "ts": "1700000000000",
                    "checksum": 0,
                    "prevSeqId": prev,
                    "seqId": seq,
                }
            ],
        }
    )


@settings(max_examples=150, deadline=None)
@given(st.lists(step_st, max_size=40))
def test_session_book_is_truth_or_absent(steps: list[tuple[str, int, int, bool, bool]]) -> None:
    bids: dict[int, int] = {10: 1}
    asks: dict[int, int] = {40: 1}
    seq = 100
    s = V5Session(UrlKind.PUBLIC, scales={"BTC-USDT": Scale(0, 0)})

    def levels(side: dict[int, int]) -> list[list[str]]:
        return [[str(p), str(q), "0", "1"] for p, q in side.items()]

    s.receive(frame("snapshot", levels(bids), levels(asks), -1, seq), T0)
    awaiting_snapshot = False
    for kind, price, size, delivered, is_ask in steps:
        if kind == "snapshot":
            f = frame("snapshot", levels(bids), levels(asks), -1, seq)
        else:
            prev = seq
            if kind == "heartbeat":
                f = frame("update", [], [], seq, seq)
            else:
                p = price + (30 if is_ask else 0)  # bids 1..30, asks 31..60: never crossed
                side = asks if is_ask else bids
                if size:
                    side[p] = size
                else:
                    side.pop(p, None)
                seq = seq - 50 if kind == "reset" else seq + 1 + price % 3
                ch = [[str(p), str(size), "0", "1"]]
                f = frame("update", [] if is_ask else ch, ch if is_ask else [], prev, seq)
        if not delivered:
            continue
        out = s.receive(f, T0)
        sent = s.data_to_send()
        book = s.book("books", "BTC-USDT")
        if kind == "snapshot":
            assert len(out) == 1 and isinstance(out[0], BookSnapshot)
            awaiting_snapshot = False
        elif awaiting_snapshot:
            assert out == [] and sent == []
        elif out and isinstance(out[0], BookGap):
            assert len(sent) == 2 and book is None
            awaiting_snapshot = True
            event("gap")
        else:
            assert len(out) == 1 and isinstance(out[0], BookUpdate) and sent == []
            event("sequence reset accepted" if out[0].is_sequence_reset else "update applied")
        if book is not None:
            assert not awaiting_snapshot
            assert {t: u for t, u, _ in book.bids()} == bids
            assert {t: u for t, u, _ in book.asks()} == asks
            assert book.seq_id == seq
        else:
            assert awaiting_snapshot
