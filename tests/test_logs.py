"""LOG_FORMAT: text for a person at a terminal, JSON for a log collector, unless set."""
from __future__ import annotations

import io
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


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    handlers = logging.getLogger().handlers[:]
    yield
    logging.getLogger().handlers[:] = handlers


def _formatter() -> logging.Formatter | None:
    return logging.getLogger().handlers[0].formatter


@pytest.mark.parametrize(("given", "at_terminal", "expected"), [
    (None, True, logs.TextFormatter), (None, False, logs.JsonFormatter),
    ("json", True, logs.JsonFormatter), ("text", False, logs.TextFormatter),
])
def test_format_follows_the_setting_then_the_terminal(
    given: str | None, at_terminal: bool, expected: type[logging.Formatter], terminal: TextIO,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("sys.stderr", terminal if at_terminal else io.StringIO())
    environ = {} if given is None else {"LOG_FORMAT": given}
    logs.configure(Settings.from_env(environ).log_format)
    assert type(_formatter()) is expected


def test_unknown_format_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="LOG_FORMAT"):
        Settings.from_env({"LOG_FORMAT": "xml"})
