"""The fan-out benchmark's SSE client: `python -m bench.sseclient PORT PATH STREAMS`.

A raw asyncio protocol per connection (no HTTP library), so one process holds thousands of
streams cheaply; several of these processes share the load. Once every stream has received
its first bytes it prints "ready" and reads "START END" (epoch seconds) from stdin. Each
update's data carries "ts" (epoch ms when it was built or published): an update counts when
its ts falls in [START, END], and its latency is the arrival time minus ts. Prints one JSON line.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import re
import resource
import sys
import time

TS = re.compile(rb'"ts":(\d+)')
CONNECT_CONCURRENCY = 100
READY_WITHIN = 60.0  # seconds for every stream to open and get its first bytes
TAIL = 64  # bytes kept between reads: a "ts" split across two reads is found in the next


class Reader(asyncio.Protocol):
    def __init__(self, window: list[float], latencies: list[float], pushes: set[int]) -> None:
        self.window, self.latencies, self.pushes = window, latencies, pushes
        self.counted, self.tail, self.open = 0, b"", False
        self.first = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.open = True

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False

    def data_received(self, data: bytes) -> None:
        now_ms = time.time() * 1000
        if not self.first.done():
            self.first.set_result(None)
        buffer = self.tail + data
        end = 0
        for match in TS.finditer(buffer):
            if match.end() == len(buffer):
                break  # perhaps more digits in the next read
            ts = int(match[1])
            end = match.end()
            if self.window[0] * 1000 <= ts <= self.window[1] * 1000:
                self.counted += 1
                self.latencies.append(now_ms - ts)
                self.pushes.add(ts)
        self.tail = buffer[max(end, len(buffer) - TAIL):]


async def open_one(port: int, path: str, reader: Reader, gate: asyncio.Semaphore) -> bool:
    loop = asyncio.get_running_loop()
    async with gate:
        try:
            transport, _ = await loop.create_connection(lambda: reader, "127.0.0.1", port)
        except OSError:
            return False
        transport.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n".encode())
        return True


async def run(port: int, path: str, streams: int) -> dict[str, object]:
    latencies: list[float] = []
    pushes: set[int] = set()  # distinct ts: how many pushes the server made in the window
    window = [0.0, 0.0]  # set from stdin once every stream is open
    readers = [Reader(window, latencies, pushes) for _ in range(streams)]
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    cpu_before = time.process_time()
    opened = await asyncio.gather(*(open_one(port, path, r, gate) for r in readers))
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(READY_WITHIN):
            await asyncio.gather(*(r.first for r in readers if r.open))
    print("ready", flush=True)
    start, end = map(float, (await asyncio.to_thread(sys.stdin.readline)).split())
    window[:] = [start, end]
    await asyncio.sleep(max(0.0, end - time.time()) + 1.0)  # the window, plus the last pushes in flight
    held = sum(1 for r in readers if r.open)
    return {"streams": streams, "opened": sum(opened), "heldAtEnd": held,
            "counted": sum(r.counted for r in readers), "latencies": latencies, "pushes": sorted(pushes),
            "cpuSeconds": time.process_time() - cpu_before}


def main() -> None:
    port, path, streams = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    print(json.dumps(asyncio.run(run(port, path, streams))))


if __name__ == "__main__":
    main()
