"""Redis failures as outages: which errors mean "unavailable", and a breaker that fails fast.

Every `RedisError` but a data error (a bad value or a wrong key type: a bug of ours) is an
outage: refused or timed-out connections, a full pool, `BUSY`, `READONLY`, `OOM`,
`MASTERDOWN`, `LOADING`. After one, the breaker fails calls at once for `cooldown`
seconds, then lets a single call through as a probe: a blackholed Redis costs one timeout
per cooldown, not one per call.
"""
from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from redis.exceptions import DataError, RedisError, ResponseError

from app.live import LiveUnavailable

_BUG_REPLIES = ("WRONGTYPE", "ERR user_script", "ERR Error running script")


def is_outage(exc: BaseException) -> bool:
    """True for what a retry later can cure, False for a bug that a retry would repeat."""
    if isinstance(exc, DataError):
        return False
    if isinstance(exc, ResponseError):
        return not str(exc).startswith(_BUG_REPLIES)
    return isinstance(exc, RedisError | OSError | TimeoutError)


class Breaker:
    """Closed until an outage; then open for `cooldown` seconds; then one probe at a time."""

    def __init__(self, cooldown: float) -> None:
        self.cooldown = cooldown
        self._open_until = 0.0
        self.trips = 0  # outages seen (for the metrics)
        self.last_error = ""

    @property
    def status(self) -> str:
        """What /readyz reports, without a round trip: "ok" or "unavailable"."""
        return "unavailable" if self._open_until else "ok"

    @contextmanager
    def guard(self) -> Iterator[None]:
        """Run one Redis call: fail fast while open, translate and record an outage."""
        now = time.monotonic()
        if now < self._open_until:
            raise LiveUnavailable(f"redis: unavailable ({self.last_error}); retrying after a pause")
        if self._open_until:
            self._open_until = now + self.cooldown  # this call is the probe: the others still fail fast
        try:
            yield
        except Exception as exc:
            if not is_outage(exc):
                raise
            self.trip(exc)
            raise LiveUnavailable(f"redis: {exc}") from exc
        self._open_until = 0.0

    def trip(self, exc: BaseException) -> None:
        self.trips += 1
        self.last_error = f"{type(exc).__name__}: {exc}"[:200]
        self._open_until = time.monotonic() + self.cooldown
