"""The open streams of this process: the caps, the one-pass fan-out, the keep-alive timer, shutdown.

This is the one place that knows which streams are open. A push is encoded once (with and
without HTTP/1.1 chunked framing) and written to every socket in one pass: no task, future
or timeout per stream (nchan's model); the loop serves other work between slices of streams.
A stream whose socket buffer is above a small high-water mark is skipped; it gets the newest
frame when it drains, or is aborted once it has been stalled for `send_timeout`. It imports
no aiohttp: the HTTP layer hands it the transport once the response headers are out.
"""
from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from app.errors import RateLimited, ServiceUnavailable

# Bytes queued in user space above which a stream is skipped: a few frames. The kernel's
# send buffer is in front of it, so a reader that keeps up never comes near it.
HIGH_WATER = 16 * 1024
STREAM_RETRY_SECONDS = 5
PING = b": ping\n\n"
SHUTDOWN_WAIT = 5.0  # seconds shutdown waits for the stopped streams' handlers to return
SLICE = 500  # streams written per callback of a pass


@dataclass(frozen=True, slots=True)
class Frame:
    """One SSE frame, framed both ways once, so the pass only picks one per stream."""

    plain: bytes
    chunked: bytes

    @classmethod
    def of(cls, data: bytes) -> Frame:
        return cls(data, b"%x\r\n%s\r\n" % (len(data), data))


PING_FRAME = Frame.of(PING)


class Stream:
    """One open stream as the registry sees it: a transport to write to and a way to end it."""

    __slots__ = ("client", "transport", "chunked", "end", "since", "hold_until")

    def __init__(self, client: str) -> None:
        self.client = client
        self.transport: asyncio.WriteTransport | None = None  # None until the headers are out
        self.chunked = False
        self.end: Callable[[], None] = _nothing
        self.since = 0.0  # when it went above the high-water mark; 0 while it keeps up
        self.hold_until = 0.0  # no frame before this (monotonic): the per-stream push interval

    def attach(self, transport: asyncio.WriteTransport, chunked: bool, end: Callable[[], None]) -> None:
        self.transport, self.chunked, self.end = transport, chunked, end


def _nothing() -> None:
    """The end callback of a stream not attached yet."""


class StreamRegistry:
    """Caps (global and per client address), fan-out, pings and shutdown for every open stream."""

    def __init__(self, max_streams: int, per_client: int, interval: float, ping_interval: float,
                 send_timeout: float) -> None:
        self.max_streams, self.per_client = max_streams, per_client
        self._interval, self._ping_interval, self._send_timeout = interval, ping_interval, send_timeout
        self._admitted: set[Stream] = set()  # every admitted stream, attached or not: the caps count these
        self._live: set[Stream] = set()  # attached streams that receive pushes
        self._lagging: set[Stream] = set()  # owed the newest frame once they drain
        self._per_client: Counter[str] = Counter()
        self._current: Frame | None = None  # the newest update, for streams that skipped it
        self._stopping = False
        self._emptied = asyncio.Event()
        self._written = asyncio.Event()  # set while no pass is being written
        self._written.set()
        self.last_push = float("-inf")  # monotonic time of the last pass: the hub spaces pushes from it
        self._next_ping = time.monotonic() + ping_interval
        self.skipped = 0  # frames a slow stream did not get because a newer one replaced them

    def __len__(self) -> int:
        return len(self._admitted)

    def open_streams(self, client: str) -> int:
        return self._per_client[client]

    @contextlib.contextmanager
    def admit(self, client: str) -> Iterator[Stream]:
        """A place for one stream of `client` for the block; a domain error when a cap is reached."""
        if self._stopping or len(self._admitted) >= self.max_streams:
            raise ServiceUnavailable("too many open streams; poll GET /top instead",
                                     {"maxStreams": self.max_streams})
        if self._per_client[client] >= self.per_client:
            raise RateLimited(f"at most {self.per_client} open streams per client address", STREAM_RETRY_SECONDS,
                              scope="client")
        stream = Stream(client)
        self._admitted.add(stream)
        self._per_client[client] += 1
        try:
            yield stream
        finally:
            self._forget(stream)

    def join(self, stream: Stream, sent_version: str | None, current_version: str | None) -> None:
        """Start pushing to an attached stream; it is owed the newest state if it missed it."""
        self._live.add(stream)
        if sent_version != current_version and self._current is not None:
            self._lagging.add(stream)

    def push(self, frame: Frame) -> None:
        """Write `frame` to every stream that can take it now, in one pass of a few slices.

        Between slices the loop serves other work (a 10,000-stream pass is mostly send() calls,
        tens of milliseconds): no task per stream, one callback per SLICE streams.
        """
        self._current = frame
        now = self.last_push = time.monotonic()
        self._written.clear()
        self._write_slice(frame, list(self._live), 0, now)

    async def written(self) -> None:
        """Until the pass of the last push has reached every stream."""
        await self._written.wait()

    def _write_slice(self, frame: Frame, streams: list[Stream], start: int, now: float) -> None:
        if frame is not self._current:
            return  # a newer push took over: it writes the newest frame to every stream
        try:
            self._write(frame, streams[start:start + SLICE], now)
        except BaseException:
            self._written.set()  # a pass that failed must not hold back the hub's next read for good
            raise
        if start + SLICE < len(streams):
            asyncio.get_running_loop().call_soon(self._write_slice, frame, streams, start + SLICE, now)
        else:
            self._written.set()

    def _write(self, frame: Frame, streams: list[Stream], now: float) -> None:
        hold, high_water, live, lagging, gone = now + self._interval, HIGH_WATER, self._live, self._lagging, []
        for stream in streams:
            transport = stream.transport
            if stream not in live:
                continue  # it left during the pass: its connection may already carry something else
            if transport is None or transport.is_closing():
                gone.append(stream)
            elif stream.hold_until > now or transport.get_write_buffer_size() > high_water:
                if stream not in lagging:
                    lagging.add(stream)
                else:
                    self.skipped += 1  # it still owed the previous one
            else:
                transport.write(frame.chunked if stream.chunked else frame.plain)
                stream.hold_until = hold
                lagging.discard(stream)  # it has the newest frame: owed nothing
        for stream in gone:
            self._drop(stream)

    def _deliver_owed(self, now: float, deliver: bool) -> None:
        """Abort the lagging streams stalled too long; if `deliver`, give those that drained the newest frame."""
        frame, high_water = self._current, HIGH_WATER
        for stream in tuple(self._lagging):
            transport = stream.transport
            if transport is None or transport.is_closing():
                self._drop(stream)
            elif transport.get_write_buffer_size() > high_water:
                stream.since = stream.since or now
                if now - stream.since >= self._send_timeout:
                    transport.abort()  # a graceful close would wait on the stalled peer
                    self._drop(stream)
            elif deliver and stream.hold_until <= now and frame is not None:
                transport.write(frame.chunked if stream.chunked else frame.plain)
                stream.hold_until, stream.since = now + self._interval, 0.0
                self._lagging.discard(stream)

    def _ping_all(self, now: float) -> None:
        """A keep-alive comment to every stream that keeps up; notice those that left or stalled."""
        gone = []
        for stream in self._live:
            transport = stream.transport
            if transport is None or transport.is_closing():
                gone.append(stream)
            elif transport.get_write_buffer_size() > HIGH_WATER:
                stream.since = stream.since or now
                self._lagging.add(stream)  # checked for the stall on every tick from now on
            else:
                transport.write(PING_FRAME.chunked if stream.chunked else PING_FRAME.plain)
        for stream in gone:
            self._drop(stream)

    async def keep_alive(self) -> None:
        """The one timer of every stream: a tick every push interval."""
        while True:
            await asyncio.sleep(min(self._interval, self._ping_interval))
            self.tick(time.monotonic())

    def tick(self, now: float) -> None:
        """Stalls are checked on every tick; owed frames and pings are sent only while idle.

        While pushes flow, a lagging stream that drained gets the next push like every other
        stream: delivering it here, off the pushes' beat, would hold it back from the next push
        (at most one frame per interval per stream) and keep it a beat behind for good. So owed
        frames wait until two intervals passed without a push (one could be a push running late).
        A stream that got a push needs no ping, so a 10,000-stream ping pass never delays a push.
        """
        idle = now - self.last_push
        if self._lagging:
            self._deliver_owed(now, deliver=idle >= 2 * self._interval)
        if now >= self._next_ping:
            if idle >= self._ping_interval:
                self._ping_all(now)
                self._next_ping = now + self._ping_interval
            else:
                self._next_ping = self.last_push + self._ping_interval

    async def close(self) -> None:
        """Shutdown: refuse new streams, end every open one, then wait for their handlers to return."""
        self._stopping = True
        for stream in tuple(self._admitted):
            stream.end()
        if self._admitted:
            self._emptied.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._emptied.wait(), SHUTDOWN_WAIT)

    def _drop(self, stream: Stream) -> None:
        """Stop writing to a stream that left or stalled, and let its handler return."""
        self._live.discard(stream)
        self._lagging.discard(stream)
        stream.end()

    def _forget(self, stream: Stream) -> None:
        self._drop(stream)
        self._admitted.discard(stream)
        self._per_client[stream.client] -= 1
        if not self._per_client[stream.client]:
            del self._per_client[stream.client]  # bounded: only clients with an open stream are kept
        if not self._admitted:
            self._emptied.set()
