"""Settings.from_env: defaults, and one clear line naming the variable for every bad value."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, rsa
from jwt.algorithms import RSAAlgorithm

from app.config import RESERVED_FILES, ConfigError, Settings


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
    ("CORS_ORIGINS", "*"),
    ("CORS_ORIGINS", "https://app.example/"),
    ("CORS_ORIGINS", "https://app.example/page"),
    ("CORS_ORIGINS", "ftp://app.example"),
    ("ANOMALY_ACTION", "ban"),
    ("ANOMALY_POINTS_PER_HOUR", "0"),
    ("ANOMALY_POINTS_PER_HOUR", "-5"),
    ("ANOMALY_POINTS_PER_HOUR", "lots"),
    ("STREAM_MAX_PER_CLIENT", "0"),
    ("JWT_JWKS_URL", "file:///etc/jwks.json"),
    ("JWT_JWKS_URL", "https://"),
    ("JWT_JWKS_URL", "http://idp.example/jwks.json"),
    ("JWT_JWKS_REFRESH", "0"),
    ("JWT_JWKS_COOLDOWN", "soon"),
    ("JWT_JWKS_FILE", "/no/such/jwks.json"),
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


def test_security_defaults_are_closed_or_off() -> None:
    settings = Settings.from_env({})
    assert settings.cors_origins == ()
    assert (settings.anomaly_points_per_hour, settings.anomaly_block) == (None, False)
    assert (settings.jwt_jwks_file, settings.jwt_jwks_url) == (None, None)
    assert settings.stream_max_per_client == 20


def test_security_settings_are_read() -> None:
    settings = Settings.from_env({
        "CORS_ORIGINS": " https://App.example, http://localhost:3000 ,", "ANOMALY_POINTS_PER_HOUR": "500",
        "ANOMALY_ACTION": "block", "STREAM_MAX_PER_CLIENT": "3", "JWT_JWKS_URL": "https://idp.example/jwks.json",
        "JWT_JWKS_REFRESH": "60", "JWT_JWKS_COOLDOWN": "5",
    })
    assert settings.cors_origins == ("https://app.example", "http://localhost:3000")
    assert (settings.anomaly_points_per_hour, settings.anomaly_block) == (500, True)
    assert settings.stream_max_per_client == 3
    assert (settings.jwt_jwks_url, settings.jwks_refresh, settings.jwks_cooldown) == (
        "https://idp.example/jwks.json", 60.0, 5.0)
    assert Settings.from_env({"JWT_JWKS_URL": "http://127.0.0.1:8081/jwks"}).jwt_jwks_url  # local http is fine


_RSA_JWK = RSAAlgorithm.to_jwk(rsa.generate_private_key(65537, 2048).public_key(), as_dict=True)
_RSA_PRIVATE_JWK = RSAAlgorithm.to_jwk(rsa.generate_private_key(65537, 2048), as_dict=True)


@pytest.mark.parametrize("content", [
    pytest.param("not json", id="not-json"),
    pytest.param("[]", id="not-an-object"),
    pytest.param('{"keys": []}', id="no-keys"),
    pytest.param(json.dumps({"keys": [{**_RSA_JWK, "use": "enc", "kid": "e"}]}), id="only-encryption-keys"),
    pytest.param(json.dumps({"keys": [_RSA_JWK]}), id="no-kid"),
    pytest.param(json.dumps({"keys": [{**_RSA_JWK, "kid": "a"}, {**_RSA_JWK, "kid": "a"}]}), id="duplicate-kid"),
    pytest.param(json.dumps({"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "h"}]}), id="symmetric-key"),
    pytest.param(json.dumps({"keys": [{**_RSA_PRIVATE_JWK, "kid": "p"}]}), id="private-key"),
    pytest.param(json.dumps({"keys": [{**_RSA_JWK, "kid": "a", "alg": "HS256"}]}), id="hs-alg-on-rsa"),
    pytest.param(json.dumps({"keys": [{**_RSA_JWK, "kid": "a", "alg": "none"}]}), id="alg-none"),
    pytest.param(json.dumps({"keys": [{**_RSA_JWK, "kid": "a", "alg": "ES256"}]}), id="ec-alg-on-rsa"),
    pytest.param(json.dumps({"keys": [{"kty": "RSA", "kid": "a", "n": "!!", "e": "AQAB"}]}), id="broken-key"),
])
def test_bad_jwks_file_names_its_variable(tmp_path: Path, content: str) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match="^JWT_JWKS_FILE: ") as error:
        Settings.from_env({"JWT_JWKS_FILE": str(path)})
    assert "AQAB" not in str(error.value)  # the message names the key, never quotes it


def test_jwks_file_and_url_are_exclusive(tmp_path: Path) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [{**_RSA_JWK, "kid": "a"}]}))
    assert Settings.from_env({"JWT_JWKS_FILE": str(path)}).jwt_jwks_file == str(path)
    with pytest.raises(ConfigError, match="^JWT_JWKS_URL: "):
        Settings.from_env({"JWT_JWKS_FILE": str(path), "JWT_JWKS_URL": "https://idp.example/jwks.json"})


def test_stream_max_follows_the_open_files_limit_raised_to_the_hard_limit() -> None:
    import resource

    settings = Settings.from_env({})
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert soft == settings.open_files == (hard if hard != resource.RLIM_INFINITY else soft)
    assert settings.stream_max == settings.open_files - RESERVED_FILES
    with pytest.raises(ConfigError, match="STREAM_MAX"):
        Settings.from_env({"STREAM_MAX": str(settings.open_files)})  # more sockets than the process may open


def test_trusted_proxies_are_addresses_or_networks() -> None:
    proxies = Settings.from_env({"TRUSTED_PROXIES": "10.0.0.0/8, 192.168.1.7,::1"}).trusted_proxies
    assert [str(network) for network in proxies] == ["10.0.0.0/8", "192.168.1.7/32", "::1/128"]
    with pytest.raises(ConfigError, match="TRUSTED_PROXIES"):
        Settings.from_env({"TRUSTED_PROXIES": "10.0.0.0/8, proxy.example"})
