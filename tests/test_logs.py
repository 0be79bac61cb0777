"""LOG_FORMAT: text for a person at a terminal, JSON for a log collector, unless set."""
from __future__ import annotations

import io
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
