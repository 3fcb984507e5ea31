"""Candle finalisation and instrument changes (PROTOCOL.md §3.4, §3.5, §4.5, §8.7, §8.8)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from recorder.venues.okx_v5.parse import parse_candle
from recorder.venues.okx_v5.records import Candle, Instrument
from recorder.venues.okx_v5.tracking import CandleFinaliser, InstrumentTracker

T0 = datetime(2026, 11, 30, tzinfo=UTC)
MS0 = int(T0.timestamp() * 1000)


def candle(minute: int, close: str, confirm: str | None) -> Candle:
    row = [str(MS0 + minute * 60_000), "1", "2", "0.5", close, "10", "15"]
    if confirm is not None:
        row += ["20", confirm]
    return parse_candle(row, "BTC-USDT", "1m", T0)


def test_confirmed_candle_is_final_once_and_repushes_are_ignored() -> None:
    f = CandleFinaliser()
    assert f.feed(candle(0, "1.1", "0")) == []
    assert f.feed(candle(0, "1.2", "0")) == []
    (final,) = f.feed(candle(0, "1.3", "1"))
    assert final.candle.close == Decimal("1.3") and not final.by_successor
    assert f.feed(candle(0, "1.3", "1")) == []
    assert f.forming("BTC-USDT", "1m") is None


def test_successor_finalises_when_confirm_never_comes() -> None:
    f = CandleFinaliser()
    f.feed(candle(0, "1.1", None))
    f.feed(candle(0, "1.4", None))
    (final,) = f.feed(candle(1, "1.5", None))
    assert final.by_successor and final.candle.close == Decimal("1.4")
    assert final.candle.ts_event == T0
    # a late re-push of the finalised minute changes nothing
    assert f.feed(candle(0, "9", "0")) == []
    forming = f.forming("BTC-USDT", "1m")
    assert forming is not None and forming.close == Decimal("1.5")


def test_successor_off_keeps_waiting_for_confirm() -> None:
    f = CandleFinaliser(finalise_on_successor=False)
    f.feed(candle(0, "1.1", "0"))
    assert f.feed(candle(1, "1.5", "0")) == []


def inst(inst_id: str, state: str = "live", tick: str = "0.1") -> Instrument:
    return Instrument(inst_id, "SPOT", "BTC", "USDT", Decimal(tick), Decimal("0.00000001"), None, state, None,
                      None, T0)


def test_instrument_changes() -> None:
    t = InstrumentTracker()
    first = t.update([inst("BTC-USDT"), inst("ETH-USDT")], complete=True)
    assert [(c.instrument, c.old, c.state_changed) for c in first] == [("BTC-USDT", None, True),
                                                                       ("ETH-USDT", None, True)]
    assert t.update([inst("BTC-USDT"), inst("ETH-USDT")], complete=True) == []
    # same data received later: no change (ts_recv is not compared)
    assert t.update([replace(inst("BTC-USDT"), ts_recv=T0 + timedelta(hours=1))], complete=False) == []
    (susp,) = t.update([inst("BTC-USDT", state="suspend")], complete=False)
    assert susp.state_changed and not susp.scale_changed
    assert (susp.old and susp.old.state, susp.new and susp.new.state) == ("live", "suspend")
    (tick,) = t.update([inst("BTC-USDT", state="suspend", tick="0.01")], complete=False)
    assert tick.scale_changed and not tick.state_changed
    (gone,) = t.update([inst("BTC-USDT", state="suspend", tick="0.01")], complete=True)
    assert gone.instrument == "ETH-USDT" and gone.new is None and gone.state_changed
    assert set(t.known) == {"BTC-USDT"}
