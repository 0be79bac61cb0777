"""A Server-Sent Events reader for tests: the wire format parsed as a browser's EventSource does.

Each block (lines up to a blank line) becomes a `Block` with its event, id, data, retry and
comment lines, including blocks that a browser would not dispatch (a lone `retry:` or a
`: ping` comment), so tests can see those too.
"""
from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any, Protocol


class LineSource(Protocol):
    async def readline(self) -> bytes: ...


@dataclass
class Block:
    event: str | None = None
    id: str | None = None
    data_lines: list[str] = field(default_factory=list)
    retry: int | None = None
    comments: list[str] = field(default_factory=list)

    @property
    def data(self) -> str:
        return "\n".join(self.data_lines)

    @property
    def is_event(self) -> bool:
        """Would a browser dispatch it (it has data)?"""
        return bool(self.data_lines)

    @property
    def type(self) -> str:
        return self.event or "message"

    def json(self) -> Any:
        return json.loads(self.data)

    def entries(self) -> list[tuple[int, str, str | None, int]]:
        return [(e["rank"], e["userId"], e["displayName"], e["score"]) for e in self.json()["entries"]]


class SSEReader:
    """Reads blocks from an `aiohttp.ClientResponse.content` (or any `readline()` source)."""

    def __init__(self, content: LineSource) -> None:
        self._content = content
        self.blocks: list[Block] = []  # everything read so far, pings included
        self._pending: Block | None = None

    async def block(self, within: float) -> Block:
        """The next block; TimeoutError if none completes in time, EOFError at the end of the stream.

        A block half read when the time runs out is kept for the next call, never lost.
        """
        async with asyncio.timeout(within):
            while True:
                raw = await self._content.readline()
                if not raw:
                    raise EOFError("the stream ended")
                line = raw.decode("utf-8").rstrip("\n").rstrip("\r")
                if not line:
                    if self._pending is not None:
                        block, self._pending = self._pending, None
                        self.blocks.append(block)
                        return block
                    continue
                if self._pending is None:
                    self._pending = Block()
                self._field(self._pending, line)

    @staticmethod
    def _field(block: Block, line: str) -> None:
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "":
            block.comments.append(value)
        elif name == "event":
            block.event = value
        elif name == "id":
            block.id = value
        elif name == "data":
            block.data_lines.append(value)
        elif name == "retry" and value.isdigit():
            block.retry = int(value)
        # any other field is ignored, as the spec says

    async def event(self, within: float) -> Block:
        """The next dispatched event (data present), skipping comments and retry-only blocks."""
        deadline = asyncio.get_running_loop().time() + within
        while True:
            block = await self.block(max(deadline - asyncio.get_running_loop().time(), 0.0))
            if block.is_event:
                return block

    async def events_for(self, seconds: float) -> list[Block]:
        """Every dispatched event that arrives within `seconds` (the stream staying open)."""
        events: list[Block] = []
        deadline = asyncio.get_running_loop().time() + seconds
        while (left := deadline - asyncio.get_running_loop().time()) > 0:
            try:
                events.append(await self.event(left))
            except TimeoutError:
                break
        return events
