"""A ranked state as served by /top and /stream, with its deterministic version, encoded once."""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from app.domain import Entry


def entry_body(entry: Entry, rank: int) -> dict[str, Any]:
    return {"rank": rank, "userId": entry.user_id, "displayName": entry.display_name, "score": entry.score}


def encode(body: Any) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


@dataclass(frozen=True, slots=True)
class Snapshot:
    entries: tuple[Entry, ...]
    version: str
    generated_at: float
    # The JSON body and its ETag, made once: every reader of this version gets these.
    encoded: bytes = field(default=b"", compare=False)
    etag: str = field(default="", compare=False)

    @classmethod
    def of(cls, entries: list[Entry]) -> Snapshot:
        # The version hashes only what a reader sees, so every process computes the same one.
        visible = [[e.user_id, e.display_name, e.score] for e in entries]
        digest = hashlib.sha256(json.dumps(visible, separators=(",", ":")).encode()).hexdigest()
        made = cls(entries=tuple(entries), version=digest[:20], generated_at=time.time())
        return cls(made.entries, made.version, made.generated_at, encode(made.body()), f'"{made.version}"')

    def body(self) -> dict[str, Any]:
        stamp = datetime.fromtimestamp(self.generated_at, UTC)
        return {
            "entries": [entry_body(entry, rank) for rank, entry in enumerate(self.entries, 1)],
            "version": self.version,
            "generatedAt": stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        }

    def sse(self, event: str, ts: int | None = None) -> bytes:
        """This state as one SSE frame; an update's data also carries `ts` (epoch ms of the push)."""
        data = self.encoded if ts is None else b'%s,"ts":%d}' % (self.encoded[:-1], ts)
        return b"event: %s\nid: %s\ndata: %s\n\n" % (event.encode(), self.version.encode(), data)
