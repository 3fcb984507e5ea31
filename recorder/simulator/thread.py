"""A simulator in a background thread with its own event loop, for synchronous code.

One generic shell for every venue's simulator (:class:`recorder.simulator.SimulatorThread`
for OKEx v1, :class:`recorder.simulator.okx_v5.SimulatorThread` for OKX v5): the subclass
says how to build its simulator (:meth:`ThreadedSimulator._make`); this class starts it in
a thread, waits until it listens, hands its attributes through, runs hooks inside its loop
and stops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Coroutine
from typing import Any, Generic, Protocol, Self, TypeVar

from recorder.errors import RecorderError

T = TypeVar("T")


class _Served(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


S = TypeVar("S", bound=_Served)


class ThreadedSimulator(Generic[S]):
    """A simulator ``S`` in a daemon thread with its own loop; a sync context manager.

    Attributes not defined here are the simulator's (``ws_url``, ``rest_url``, ``truth``, ...).
    :meth:`call` / :meth:`run` execute a hook or coroutine inside the simulator's loop and
    return its result (safe from any thread). Raises :class:`RecorderError` when used while
    not running, or when the server does not start within the timeout; a start failure is
    re-raised as it was.
    """

    thread_name = "simulator"

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._sim: S | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None

    def _make(self) -> S:
        """Build the (not yet started) simulator; called inside the thread's loop."""
        raise NotImplementedError

    @property
    def sim(self) -> S:
        if self._sim is None:
            raise RecorderError(f"the {self.thread_name} thread is not running")
        return self._sim

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.sim, name)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout: float = 30.0) -> None:
        """Start the thread and wait until the simulator listens. Raises what the start raised."""
        self._thread = threading.Thread(target=self._main, name=self.thread_name, daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RecorderError(f"{self.thread_name} thread did not start in time")
        if self._error is not None:
            raise self._error

    def _main(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        try:
            sim = self._make()
            await sim.start()
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._sim = sim
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await sim.stop()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the simulator and join the thread. Idempotent."""
        if self._loop is not None and self._stop is not None and self._thread is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(timeout)
        self._thread = None

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn(*args, **kwargs)`` inside the simulator's loop and return its result."""

        async def run() -> T:
            return fn(*args, **kwargs)

        return self.run(run())

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        """Run a coroutine in the simulator's loop; wait for its result."""
        if self._loop is None:
            raise RecorderError(f"the {self.thread_name} thread is not running")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)
