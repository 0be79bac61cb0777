"""Settings.from_env: defaults, and one clear line naming the variable for every bad value."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa

from app.config import ConfigError, Settings


def test_defaults_are_the_embedded_service() -> None:
    settings = Settings.from_env({})
    assert (settings.host, settings.port) == ("127.0.0.1", 8080)
    assert settings.database_url == "sqlite:///./scoreboard.db"
    assert settings.redis_url is None
    assert dict(settings.actions) == {"complete": 10}
    assert settings.default_action == "complete"
    assert (settings.rate_limit_user, settings.rate_limit_caller) == ("60/minute", "6000/minute")


def test_actions_keep_their_order() -> None:
    settings = Settings.from_env({"SCORE_ACTIONS": "win=25, lose=1,bonus=-5"})
    assert list(settings.actions.items()) == [("win", 25), ("lose", 1), ("bonus", -5)]
    assert settings.default_action == "win"


_DSA_PEM = dsa.generate_private_key(2048).public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


@pytest.mark.parametrize(("variable", "value"), [
    ("DATABASE_URL", "mysql://root@localhost/db"),
    ("DATABASE_URL", "sqlite:///"),
    ("DATABASE_URL", "postgresql://h/db?schema=Robert'); DROP"),
    ("REDIS_URL", "memcached://localhost"),
    ("SCORE_ACTIONS", "complete"),
    ("SCORE_ACTIONS", "complete=ten"),
    ("SCORE_ACTIONS", "a=1,a=2"),
    ("SCORE_ACTIONS", ""),
    ("RATE_LIMIT_USER", "lots"),
    ("RATE_LIMIT_CALLER", "10/fortnight"),
    ("JWT_PUBLIC_KEY", "-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----"),
    ("JWT_PUBLIC_KEY", _DSA_PEM),
    ("JWT_SECRET", "short"),
    ("PORT", "eighty"),
    ("PORT", "70000"),
    ("PUSH_INTERVAL", "0"),
])
def test_bad_value_names_its_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigError, match=f"^{variable}: "):
        Settings.from_env({variable: value})


def test_bad_config_stops_the_command_with_one_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "app", "serve"], env={"DATABASE_URL": "mysql://x/y", "PATH": ""},
        capture_output=True, text=True, timeout=60, cwd=Path(__file__).parents[1],
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "configuration error: DATABASE_URL: unknown scheme 'mysql' (use postgresql:// or sqlite:///)"]
