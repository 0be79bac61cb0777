"""A ranked state as served by /top and /stream, with its deterministic version."""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from app.domain import Entry


def entry_body(entry: Entry, rank: int) -> dict[str, Any]:
    return {"rank": rank, "userId": entry.user_id, "displayName": entry.display_name, "score": entry.score}


@dataclass(frozen=True, slots=True)
class Snapshot:
    entries: tuple[Entry, ...]
    version: str
    generated_at: float

    @classmethod
    def of(cls, entries: list[Entry]) -> Snapshot:
        # The version hashes only what a reader sees, so every process computes the same one.
        visible = [[e.user_id, e.display_name, e.score] for e in entries]
        digest = hashlib.sha256(json.dumps(visible, separators=(",", ":")).encode()).hexdigest()
        return cls(entries=tuple(entries), version=digest[:20], generated_at=time.time())

    def body(self) -> dict[str, Any]:
        stamp = datetime.fromtimestamp(self.generated_at, UTC)
        return {
            "entries": [entry_body(entry, rank) for rank, entry in enumerate(self.entries, 1)],
            "version": self.version,
            "generatedAt": stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        }
