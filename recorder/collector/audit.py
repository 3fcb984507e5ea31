"""The book audit: incremental order books compared with the venue's REST book.

For each venue that offers it (:class:`recorder.venue.BookAuditSource`; OKEx v1: REST
``depth.do``): after every rebuild of an incremental book and every
``collector.book_audit_interval`` seconds (0 = never, not even after rebuilds), the auditor
asks the venue's REST book of the top D levels (D = ``snapshot_depth``) on its REST URL and
hands the answer to :meth:`recorder.collector.pipeline.FramePipeline.audit_book`; the session
holding the book applies the rule (docs/collector.md "Book audit"): the answer's top D levels
must equal those of one book state the recorder held during ``[asked - slack, answered + slack]``
(``collector.book_audit_slack_ms``). The check waits ``slack`` after the answer, so states the
WebSocket delivers a little later count. A failed audit is a ``book_audit_failed`` feed event
and a resubscription (the session's doing; :attr:`BookAuditor.on_resubscribe` lets the
connections send it at once).

Runs as a task on the collector's event loop (httpx async: the loop never blocks).
An unreachable or failing REST endpoint is logged once, recorded as an open
``audit_unavailable`` span (closed when it answers again), and retried with
:func:`recorder.backoff.backoff`; it never resyncs a book and never stops the collector.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

import httpx

from recorder.backoff import BackoffPolicy, backoff
from recorder.collector.pipeline import FramePipeline
from recorder.errors import RecorderError
from recorder.poller.ratelimit import RateLimiter
from recorder.records import BookSnapshot, FeedEvent, FeedEventKind, utc_now
from recorder.venue import BookAuditSource

__all__ = ["BookAuditor"]

log = logging.getLogger("recorder.collector")


class BookAuditor:
    """Audits one venue's incremental books against its REST book (see the module doc).

    ``interval`` s between periodic audits (> 0), ``slack`` s of tolerance around the REST
    call, ``depth`` levels compared, ``policy`` the backoff while REST is unreachable,
    ``source`` the venue's REST book request and parser, ``venue`` its name (whose sessions are
    audited), ``limiter`` the process-wide REST rate limiter (keyed by the endpoint's last path
    segment, e.g. ``depth.do``: 20 calls / 2 s) that
    paces the calls (audits then run late rather than being refused).
    """

    def __init__(self, pipeline: FramePipeline, rest_url: str, *, source: BookAuditSource, venue: str,
                 interval: float, slack: float, depth: int, policy: BackoffPolicy,
                 limiter: RateLimiter | None = None, timeout: float = 10.0, poll: float = 0.2,
                 on_resubscribe: Callable[[], None] | None = None) -> None:
        self.pipeline = pipeline
        self.rest_url = rest_url.rstrip("/") + "/"
        self.source = source
        self.venue = venue
        self.on_resubscribe = on_resubscribe
        self.interval = interval
        self.slack = slack
        self.depth = depth
        self.policy = policy
        self.timeout = timeout
        self.poll = poll
        self.limiter = limiter
        self.outcomes: dict[str, int] = {}
        self._unavailable: FeedEvent | None = None
        self._checks: set[asyncio.TimerHandle] = set()

    async def run(self, stop: asyncio.Event) -> None:
        """Audit until ``stop``; never raises (a bug is logged and the auditor ends)."""
        try:
            async with httpx.AsyncClient(base_url=self.rest_url, timeout=self.timeout,
                                         trust_env=False) as client:
                await self._loop(client, stop)
        except Exception:  # pragma: no cover - a bug must not take the collector with it
            log.exception("book audit stopped")
        finally:
            for handle in self._checks:  # the pipeline is about to shut down: no audit after that
                handle.cancel()
            if self._unavailable is not None:
                self.pipeline.emit(self._close_unavailable("still unreachable at shutdown"))

    async def _loop(self, client: httpx.AsyncClient, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        next_periodic = loop.time() + self.interval
        delays = None
        due: dict[str, int] = {}  # symbol -> epoch of the book to audit (kept while REST is down)
        while not stop.is_set():
            periodic = loop.time() >= next_periodic
            if periodic:
                next_periodic = loop.time() + self.interval
            due.update(self.pipeline.audit_candidates(periodic=periodic, venue=self.venue))
            for symbol, epoch in list(due.items()):
                if stop.is_set():
                    return
                if not await self._audit(client, symbol, epoch):
                    delays = delays or backoff(self.policy)  # unreachable: wait, then audit what is due
                    await _sleep(stop, next(delays))
                    break
                delays = None
                if due.get(symbol) == epoch:
                    del due[symbol]
            await _sleep(stop, self.poll)

    async def _audit(self, client: httpx.AsyncClient, symbol: str, epoch: int) -> bool:
        url, params = self.source.audit_request(self.rest_url, symbol, self.depth)
        endpoint = url.rsplit("/", 1)[-1]
        if self.limiter is not None:  # the documented REST limits hold for the process (with the poller)
            await self.limiter.acquire(endpoint)
        sent = utc_now()
        try:
            response = await client.get(url, params=params)
            response.raise_for_status()
            answered = utc_now()
            rest = self.source.audit_parse(response.content, symbol, answered)
        except (httpx.HTTPError, RecorderError) as exc:
            self._unreachable(f"{endpoint} for {symbol}: {exc or type(exc).__name__}")
            return False
        if self._unavailable is not None:
            log.info("book audit: %s answers again", self.rest_url)
            self.pipeline.emit(self._close_unavailable("answers again"))
        # Checked ``slack`` s later, so book states the WebSocket delivers a little later count too;
        # meanwhile the next book's REST call goes out.
        loop = asyncio.get_running_loop()
        self._checks = {h for h in self._checks if not h.cancelled() and h.when() > loop.time()}
        self._checks.add(loop.call_later(self.slack, self._check, symbol, epoch, sent, answered, rest))
        return True

    def _check(self, symbol: str, epoch: int, sent: datetime, answered: datetime, rest: BookSnapshot) -> None:
        slack = timedelta(seconds=self.slack)
        outcome = self.pipeline.audit_book(symbol, epoch, sent, answered, slack, rest, utc_now(),
                                           venue=self.venue)
        self.outcomes[outcome.result] = self.outcomes.get(outcome.result, 0) + 1
        if outcome.result == "fail" and self.on_resubscribe is not None:
            self.on_resubscribe()  # the session queued a resubscription: the connection sends it

    def _unreachable(self, reason: str) -> None:
        if self._unavailable is not None:
            return
        now = utc_now()
        self._unavailable = FeedEvent(kind=FeedEventKind.AUDIT_UNAVAILABLE, ts_start=now, ts_end=None,
                                      connection="rest", detail=f"book audit: {reason}"[:500],
                                      venue=self.venue)
        self.pipeline.emit(self._unavailable)
        log.warning("book audit: REST unreachable (%s); books are not audited until it answers, "
                    "retrying with backoff", reason[:300])

    def _close_unavailable(self, why: str) -> FeedEvent:
        span = self._unavailable
        assert span is not None
        self._unavailable = None
        return FeedEvent(kind=span.kind, ts_start=span.ts_start, ts_end=utc_now(), connection=span.connection,
                         detail=f"{span.detail} ({why})"[:500], event_id=span.event_id, venue=span.venue)


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=max(seconds, 0.0))
