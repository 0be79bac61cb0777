"""The fan-out benchmark's SSE client: `python -m bench.sseclient PORT PATH STREAMS`.

One epoll loop over raw non-blocking sockets (no HTTP library, no asyncio protocol per
connection): at 10,000 streams and 4 Hz the clients are 40,000 reads a second, and an asyncio
transport and protocol per read cost the clients most of the machine's two cores, which the
servers under test then lacked. Several of these processes share the load. Once every stream
has received its first bytes it prints "ready" and reads "START END" (epoch seconds) from
stdin, still reading the streams meanwhile. Each update's data carries "ts" (epoch ms when it
was built or published): an update counts when its ts falls in [START, END], and its latency
is the arrival time minus ts. Prints one JSON line.
"""
from __future__ import annotations

import json
import re
import resource
import select
import socket
import sys
import time

TS = re.compile(rb'"ts":(\d+)')
READY_WITHIN = 60.0  # seconds for every stream to open and get its first bytes
TAIL = 64  # bytes kept between reads: a "ts" split across two reads is found in the next
CONNECT_TIMEOUT = 10.0


class Reader:
    __slots__ = ("sock", "counted", "tail", "open", "first")

    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.counted, self.tail, self.open, self.first = sock, 0, b"", True, False


class Client:
    def __init__(self, port: int, path: str, streams: int) -> None:
        self.latencies: list[float] = []
        self.pushes: set[int] = set()  # distinct ts: how many pushes the server made in the window
        self.window = (0.0, 0.0)  # set from stdin once every stream is open
        self.poll = select.epoll()
        self.readers: dict[int, Reader] = {}
        request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n".encode()
        for _ in range(streams):
            try:
                sock = socket.create_connection(("127.0.0.1", port), timeout=CONNECT_TIMEOUT)
                sock.sendall(request)
            except OSError:
                continue  # reported as a stream not opened
            sock.setblocking(False)
            self.readers[sock.fileno()] = Reader(sock)
            self.poll.register(sock.fileno(), select.EPOLLIN)

    def run_until(self, deadline: float, until_ready: bool = False) -> str | None:
        """Read every stream until `deadline`, or (`until_ready`) until every stream has its
        first bytes; a line on stdin (once registered) is returned as soon as it comes."""
        stdin = sys.stdin.fileno()
        while (left := deadline - time.time()) > 0:
            for fd, _ in self.poll.poll(min(left, 0.5)):
                if fd == stdin:
                    return sys.stdin.readline()
                self._read(self.readers[fd])
            if until_ready and all(r.first or not r.open for r in self.readers.values()):
                return None
        return None

    def _read(self, reader: Reader) -> None:
        try:
            data = reader.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            reader.open = False
            self.poll.unregister(reader.sock.fileno())
            return
        now_ms = time.time() * 1000
        reader.first = True
        buffer = reader.tail + data
        end = 0
        start_ms, end_ms = self.window[0] * 1000, self.window[1] * 1000
        for match in TS.finditer(buffer):
            if match.end() == len(buffer):
                break  # perhaps more digits in the next read
            ts = int(match[1])
            end = match.end()
            if start_ms <= ts <= end_ms:
                reader.counted += 1
                self.latencies.append(now_ms - ts)
                self.pushes.add(ts)
        reader.tail = buffer[max(end, len(buffer) - TAIL):]


def run(port: int, path: str, streams: int) -> dict[str, object]:
    cpu_before = time.process_time()
    client = Client(port, path, streams)
    client.run_until(time.time() + READY_WITHIN, until_ready=True)
    print("ready", flush=True)
    client.poll.register(sys.stdin.fileno(), select.EPOLLIN)
    line = client.run_until(time.time() + READY_WITHIN)  # the driver writes it once every client is ready
    if line is None:
        raise SystemExit("no window on stdin")
    client.poll.unregister(sys.stdin.fileno())
    start, end = map(float, line.split())
    client.window = (start, end)
    client.run_until(end + 1.0)  # the window, plus the last pushes in flight
    readers = client.readers.values()
    result: dict[str, object] = {
        "streams": streams, "opened": len(readers), "heldAtEnd": sum(1 for r in readers if r.open),
        "counted": sum(r.counted for r in readers), "latencies": client.latencies, "pushes": sorted(client.pushes),
        "cpuSeconds": time.process_time() - cpu_before,
    }
    for reader in readers:
        reader.sock.close()
    return result


def main() -> None:
    port, path, streams = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    print(json.dumps(run(port, path, streams)))


if __name__ == "__main__":
    main()
