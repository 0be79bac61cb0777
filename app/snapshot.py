"""A ranked state as served by /top and /stream, with its deterministic version, encoded once."""
from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
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
    def of(cls, entries: list[Entry], scope: tuple[str, ...] = (), extra: Mapping[str, Any] | None = None) -> Snapshot:
        """The state of `entries`; `scope` (e.g. a board and period key) enters the version, so two
        scopes that show the same users never share one, and `extra` goes into the body."""
        # The version hashes only what a reader sees, so every process computes the same one.
        visible: list[Any] = [[e.user_id, e.display_name, e.score] for e in entries]
        digest = hashlib.sha256(encode([*scope, visible] if scope else visible)).hexdigest()
        version, generated_at = digest[:20], time.time()
        stamp = datetime.fromtimestamp(generated_at, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        body = {"entries": [entry_body(entry, rank) for rank, entry in enumerate(entries, 1)],
                "version": version, "generatedAt": stamp, **(extra or {})}
        return cls(tuple(entries), version, generated_at, encode(body), f'"{version}"')

    def sse(self, event: str, ts: int | None = None) -> bytes:
        """This state as one SSE frame; an update's data also carries `ts` (epoch ms of the push)."""
        data = self.encoded if ts is None else b'%s,"ts":%d}' % (self.encoded[:-1], ts)
        return b"event: %s\nid: %s\ndata: %s\n\n" % (event.encode(), self.version.encode(), data)
