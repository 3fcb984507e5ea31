"""Which keep-alive deadline names a gap (``connection.first_overdue``).

CI once recorded a server stall as a dead connection ("no pong") with no STALL span: a ping went
out just after the last data, the stalled server never answered it, and both deadlines had passed
when the watch woke; the pong check came first in the code. The deadline that passed first names
the gap now.
"""

from __future__ import annotations

from recorder.collector.connection import first_overdue


def test_neither_passed() -> None:
    assert first_overdue(10.0, pong_due=11.0, stall_due=12.0) is None
    assert first_overdue(10.0, pong_due=None, stall_due=10.0) is None  # "after", not "at"


def test_one_passed_names_it() -> None:
    assert first_overdue(11.5, pong_due=11.0, stall_due=12.0) == "pong"
    assert first_overdue(12.5, pong_due=None, stall_due=12.0) == "stall"
    assert first_overdue(12.5, pong_due=13.0, stall_due=12.0) == "stall"


def test_both_passed_the_earlier_deadline_names_it() -> None:
    # last data at 8.0 (stall_timeout 2 -> 10.0), ping at 8.1 unanswered (pong_timeout 2 -> 10.1),
    # the watch wakes at 10.3: a stall, as it began first
    assert first_overdue(10.3, pong_due=10.1, stall_due=10.0) == "stall"
    # a ping unanswered before the data stopped: the connection died first
    assert first_overdue(10.3, pong_due=9.9, stall_due=10.0) == "pong"
    # a tie: no data is the stronger sign
    assert first_overdue(10.3, pong_due=10.0, stall_due=10.0) == "stall"
