"""LOG_FORMAT: text for a person at a terminal, JSON for a log collector, unless set."""
from __future__ import annotations

import io
import json
import logging
import os
import pty
from collections.abc import Iterator
from typing import TextIO

import pytest

from app.config import ConfigError, Settings
from app.ops import logs


@pytest.fixture
def terminal() -> Iterator[TextIO]:
    leader, follower = pty.openpty()
    with os.fdopen(follower, "w") as stream:
        yield stream
    os.close(leader)


@pytest.mark.parametrize(("given", "at_terminal", "expected"), [
    (None, True, "text"), (None, False, "json"), ("json", True, "json"), ("text", False, "text"),
])
def test_format_follows_the_setting_then_the_terminal(
    given: str | None, at_terminal: bool, expected: str, terminal: TextIO, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("sys.stderr", terminal if at_terminal else io.StringIO())
    environ = {} if given is None else {"LOG_FORMAT": given}
    assert logs.chosen_format(Settings.from_env(environ).log_format) == expected


def test_unknown_format_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="LOG_FORMAT"):
        Settings.from_env({"LOG_FORMAT": "xml"})


@pytest.mark.parametrize(("rid", "sub", "extra"), [
    ("req-1", "backend-7", None),
    (None, None, None),
    ('a"b\\c', 'caller "é" \u2028', None),
    ("req-2", "backend-7", {"audit": {"userId": "u1", "delta": 10}}),
])
def test_the_access_line_the_writer_encodes_is_the_formatter_s_line(
        rid: str | None, sub: str | None, extra: dict[str, object] | None) -> None:
    created = 1_764_780_616.1229
    fields = {"method": "GET", "route": "/scores/{userId}", "status": 200, "latencyMs": 1.25, "sub": sub}
    record = logs.access.makeRecord(logs.access.name, logging.INFO, "(access)", 0, "%s %s %d",
                                    ("GET", "/scores/{userId}", 200), None,
                                    extra={**(extra or {}), "request": fields, "requestId": rid})
    record.created, record.msecs = created, created % 1 * 1000
    line = logs._json_access_line(created, "GET", "/scores/{userId}", 200, 1.25, rid, sub, extra)
    assert line.endswith("\n")
    assert json.loads(line) == json.loads(logs.JsonFormatter().format(record))
    assert line == logs.JsonFormatter().format(record) + "\n"  # byte for byte: one log, one shape
