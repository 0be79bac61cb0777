"""Every way a token can be wrong is 401 (or 403 without the scope), and writes nothing."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import jwt
import pytest
from aiohttp.test_utils import TestClient
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from app.config import Settings
from tests.conftest import SECRET, embedded_settings, token

Client = TestClient[Any, Any]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Tokens are checked before any storage is touched: one backend pairing is enough."""
    return embedded_settings(tmp_path)
BODY = {"userId": "u1", "actionId": "a1"}
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _pem(key: Any) -> str:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def _claims(**changes: Any) -> dict[str, Any]:
    claims = {"sub": "game-1", "scope": "scores:write", "aud": "scoreboard", "exp": int(time.time()) + 600}
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


async def _status(client: Client, authorization: str | None) -> int:
    headers = {} if authorization is None else {"Authorization": authorization}
    response = await client.post("/scores/increment", json=BODY, headers=headers)
    if response.status == 401:
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert (await response.json())["error"]["code"] == "UNAUTHENTICATED"
    return response.status


def _hmac_signed(claims: dict[str, Any], key: bytes) -> str:
    """HS256 by hand: PyJWT itself refuses to sign with a PEM key, an attacker would not."""
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    signing_input = f"{header}.{b64(json.dumps(claims).encode())}"
    return f"{signing_input}.{b64(hmac.new(key, signing_input.encode(), hashlib.sha256).digest())}"


BAD_HS_TOKENS = [
    pytest.param(lambda: jwt.encode(_claims(), None, algorithm="none"), id="alg-none"),
    pytest.param(lambda: jwt.encode(_claims(), "another-" + SECRET, algorithm="HS256"), id="wrong-key"),
    pytest.param(lambda: jwt.encode(_claims(), SECRET, algorithm="HS512"), id="other-hmac-alg"),
    pytest.param(lambda: jwt.encode(_claims(exp=int(time.time()) - 60), SECRET, algorithm="HS256"), id="expired"),
    pytest.param(lambda: jwt.encode(_claims(exp=None), SECRET, algorithm="HS256"), id="missing-exp"),
    pytest.param(lambda: jwt.encode(_claims(aud="other"), SECRET, algorithm="HS256"), id="wrong-aud"),
    pytest.param(lambda: jwt.encode(_claims(aud=None), SECRET, algorithm="HS256"), id="missing-aud"),
    pytest.param(lambda: jwt.encode(_claims(sub=None), SECRET, algorithm="HS256"), id="missing-sub"),
    pytest.param(lambda: jwt.encode(_claims(scope=["scores:write"]), SECRET, algorithm="HS256"), id="scope-not-string"),
    pytest.param(lambda: jwt.encode(_claims(), RSA_KEY, algorithm="RS256"), id="rs256-for-hs-config"),
    pytest.param(lambda: token()[:-4] + "AAAA", id="bad-signature"),
    pytest.param(lambda: "not.a.jwt", id="garbage"),
]


@pytest.mark.parametrize("make_token", BAD_HS_TOKENS)
async def test_bad_token_is_401(client: Client, make_token: Any) -> None:
    assert await _status(client, f"Bearer {make_token()}") == 401
    assert (await client.get("/scores/u1")).status == 404


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", f"Token {token()}"])
async def test_missing_or_malformed_header_is_401(client: Client, header: str | None) -> None:
    assert await _status(client, header) == 401


async def test_valid_token_without_scope_is_403(client: Client) -> None:
    assert await _status(client, f"Bearer {token('users:write')}") == 403


async def test_issuer_is_enforced_when_set(make_client: Any, settings: Settings) -> None:
    client = await make_client(replace(settings, jwt_issuer="https://auth.example"))
    assert await _status(client, f"Bearer {token()}") == 401
    assert await _status(client, f"Bearer {token(iss='https://evil.example')}") == 401
    assert await _status(client, f"Bearer {token(iss='https://auth.example')}") == 200


@pytest.mark.parametrize("private_key", [
    pytest.param(RSA_KEY, id="RS256"),
    pytest.param(ec.generate_private_key(ec.SECP256R1()), id="ES256"),
    pytest.param(ed25519.Ed25519PrivateKey.generate(), id="EdDSA"),
])
async def test_public_key_config_pins_its_algorithm(make_client: Any, settings: Settings, private_key: Any) -> None:
    public_pem = _pem(private_key)
    configured = replace(settings, jwt_secret=None, jwt_public_key=public_pem)
    client = await make_client(configured)
    algorithm = configured.jwt_algorithm
    assert await _status(client, f"Bearer {jwt.encode(_claims(), private_key, algorithm=algorithm)}") == 200
    # Key confusion: the public key used as an HMAC secret must not verify.
    assert await _status(client, f"Bearer {_hmac_signed(_claims(), public_pem.encode())}") == 401
    assert await _status(client, f"Bearer {token()}") == 401
