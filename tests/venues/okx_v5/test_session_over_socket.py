"""The sans-I/O session driven over a real loopback WebSocket by a scripted v5 exchange.

The server does what the live exchange does (PROTOCOL.md §2, §3.2): acks, a snapshot, linked
updates, a heartbeat, a dropped update (gap), a refused subscription, a text ``pong``, and a
fresh snapshot after the session's unsubscribe + subscribe. The test's few-line shell only
moves frames; the assertions compare the session's book with the server's own book.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve

from recorder.venues.okx_v5.book import Scale
from recorder.venues.okx_v5.channels import ChannelArg, UrlKind
from recorder.venues.okx_v5.records import BookGap, BookSnapshot, BookUpdate, ErrorEvent, GapReason, Pong
from recorder.venues.okx_v5.session import V5Session

INST = "BTC-USDT"


class ScriptedExchange:
    """Keeps a true book; pushes snapshot/updates with linked seqIds; can skip one update."""

    def __init__(self) -> None:
        self.bids = {"100.0": "5", "99.9": "1"}
        self.asks = {"100.1": "2", "100.2": "7"}
        self.seq = 1000
        self.subscribes = 0
        self.unsubscribes = 0
        self.done = asyncio.Event()

    def levels(self, side: dict[str, str], reverse: bool) -> list[list[str]]:
        return [
            [p, s, "0", "1"] for p, s in sorted(side.items(), key=lambda kv: float(kv[0]), reverse=reverse)
        ]

    def push(self, action: str, bids: list[list[str]], asks: list[list[str]], prev: int) -> str:
        return json.dumps(
            {
                "arg": {"channel": "books", "instId": INST},
                "action": action,
                "data": [
                    {
                        "bids": bids,
                        "asks": asks,
                        "ts": "1700000000000",
                        "checksum": 0,
                        "prevSeqId": prev,
                        "seqId": self.seq,
                    }
                ],
            }
        )

    def snapshot(self) -> str:
        return self.push("snapshot", self.levels(self.bids, True), self.levels(self.asks, False), -1)

    def update(self, bids: dict[str, str], asks: dict[str, str], *, skip_seq: bool = False) -> str:
        for side, changes in ((self.bids, bids), (self.asks, asks)):
            for p, s in changes.items():
                if s == "0":
                    side.pop(p, None)
                else:
                    side[p] = s
        prev = self.seq + (1 if skip_seq else 0)  # a dropped message: prevSeqId no longer links
        self.seq = prev + 3
        return self.push(
            "update",
            [[p, s, "0", "1"] for p, s in bids.items()],
            [[p, s, "0", "1"] for p, s in asks.items()],
            prev,
        )

    async def handler(self, ws: ServerConnection) -> None:
        async for raw in ws:
            if raw == "ping":
                await ws.send("pong")
                continue
            req = json.loads(raw)
            arg = req["args"][0]
            if req["op"] == "unsubscribe":
                self.unsubscribes += 1
                await ws.send(
                    json.dumps({"id": req["id"], "event": "unsubscribe", "arg": arg, "connId": "0a0b0c0d"})
                )
                continue
            if arg["channel"] == "books" and arg["instId"] == "NOPE-USDT":
                await ws.send(
                    json.dumps(
                        {
                            "id": req["id"],
                            "event": "error",
                            "code": "60018",
                            "msg": "channel:books,instId:NOPE-USDT doesn't exist",
                            "connId": "0a0b0c0d",
                        }
                    )
                )
                continue
            self.subscribes += 1
            await ws.send(
                json.dumps({"id": req["id"], "event": "subscribe", "arg": arg, "connId": "0a0b0c0d"})
            )
            await ws.send(self.snapshot())
            if self.subscribes == 1:
                await ws.send(self.update({"100.0": "6"}, {"100.1": "0", "100.15": "3"}))
                await ws.send(self.push("update", [], [], self.seq))  # heartbeat: seqId == prevSeqId
                await ws.send(self.update({"99.95": "4"}, {}, skip_seq=True))  # gap
                await ws.send(self.update({"99.9": "0"}, {}))  # in flight after the gap: discarded
            else:
                await ws.send(self.update({"100.0": "0.5"}, {"100.3": "1"}))
                self.done.set()


async def test_session_over_loopback_socket() -> None:
    exchange = ScriptedExchange()
    session = V5Session(UrlKind.PUBLIC, scales={INST: Scale(2, 1)})
    events: list[object] = []
    async with serve(exchange.handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        async with connect(f"ws://127.0.0.1:{port}") as ws:
            session.subscribe([ChannelArg("books", INST), ChannelArg("books", "NOPE-USDT")])
            ws_out = [*session.data_to_send(), "ping"]

            async def pump() -> None:
                for m in ws_out:
                    await ws.send(m)
                async for frame in ws:
                    events.extend(session.receive(frame, datetime.now(UTC)))
                    for m in session.data_to_send():
                        await ws.send(m)
                    if exchange.done.is_set() and isinstance(events[-1], BookUpdate):
                        return

            await asyncio.wait_for(pump(), timeout=30)

    kinds = [type(e).__name__ for e in events if not type(e).__name__.endswith("Ack")]
    assert kinds.count("BookSnapshot") == 2 and kinds.count("Pong") == 1
    gaps = [e for e in events if isinstance(e, BookGap)]
    assert [g.reason for g in gaps] == [GapReason.SUBSCRIBE_ERROR, GapReason.SEQUENCE] or [
        g.reason for g in gaps
    ] == [GapReason.SEQUENCE, GapReason.SUBSCRIBE_ERROR]
    errors = [e for e in events if isinstance(e, ErrorEvent)]
    assert [(e.code, e.args) for e in errors] == [(60018, (ChannelArg("books", "NOPE-USDT"),))]
    assert any(isinstance(e, Pong) for e in events)
    assert exchange.subscribes == 2 and exchange.unsubscribes == 1
    assert session.dropped_updates == 1
    assert any(isinstance(e, BookUpdate) and e.is_heartbeat for e in events)
    # the session's book equals the exchange's true book, level for level
    book = session.book("books", INST)
    assert book is not None and book.seq_id == exchange.seq
    scale = book.scale
    assert [(str(scale.price(t)), str(scale.size(u))) for t, u, _ in book.bids()] == [
        (f"{float(p):.2f}", f"{float(s):.1f}")
        for p, s in sorted(exchange.bids.items(), key=lambda kv: -float(kv[0]))
    ]
    assert [(str(scale.price(t)), str(scale.size(u))) for t, u, _ in book.asks()] == [
        (f"{float(p):.2f}", f"{float(s):.1f}")
        for p, s in sorted(exchange.asks.items(), key=lambda kv: float(kv[0]))
    ]
    snaps = [e for e in events if isinstance(e, BookSnapshot)]
    assert snaps[1].seq_id is not None and snaps[1].seq_id > snaps[0].seq_id  # type: ignore[operator]
