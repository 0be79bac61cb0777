"""Key rotation: keys chosen by `kid` from a JWKS file or URL, each pinned to its algorithm."""
from __future__ import annotations

import hashlib
import hmac
import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm
from jwt.utils import base64url_encode

from app.config import Settings
from tests.conftest import SECRET, eventually, token
from tests.test_auth import _pem

Client = TestClient[Any, Any]
RSA_A = rsa.generate_private_key(public_exponent=65537, key_size=2048)
RSA_B = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
ED_KEY = ed25519.Ed25519PrivateKey.generate()


def jwk(private_key: Any, kid: str, alg: str | None = None, **extra: Any) -> dict[str, Any]:
    public = private_key.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        data = RSAAlgorithm.to_jwk(public, as_dict=True)
    elif isinstance(public, ec.EllipticCurvePublicKey):
        data = ECAlgorithm.to_jwk(public, as_dict=True)
    else:
        data = OKPAlgorithm.to_jwk(public, as_dict=True)
    return {**data, "kid": kid, **({"alg": alg} if alg else {}), **extra}


def signed(private_key: Any, kid: Any, alg: str, **changes: Any) -> str:
    claims = {"sub": "game-1", "scope": "scores:write", "aud": "scoreboard", "exp": int(time.time()) + 600, **changes}
    return jwt.encode(claims, private_key, algorithm=alg, headers=None if kid is None else {"kid": kid})


def _with_header(credential: str, **header: Any) -> str:
    """The same payload and signature under another header, as a forger would send it."""
    encoded = base64url_encode(json.dumps({"alg": "RS256", "typ": "JWT", **header}).encode()).decode()
    return encoded + credential[credential.index("."):]


async def status(client: Client, credential: str) -> int:
    response = await client.post("/scores/increment", json={"userId": "u1", "actionId": credential[-40:]},
                                 headers={"Authorization": f"Bearer {credential}"})
    return response.status


@pytest.fixture
def settings_with_file(tmp_path: Path) -> Settings:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [
        jwk(RSA_A, "rsa-a", "RS256"), jwk(RSA_B, "rsa-b"), jwk(EC_KEY, "ec"), jwk(ED_KEY, "ed"),
        jwk(RSA_B, "rsa-enc", "RSA-OAEP", use="enc"),  # an encryption key is skipped, not fatal
    ]}))
    return Settings(jwt_secret=SECRET, jwt_jwks_file=str(path), database_url=f"sqlite:///{tmp_path}/k.db")


@pytest.fixture
async def file_client(make_client: Any, settings_with_file: Settings) -> Client:
    client: Client = await make_client(settings_with_file)
    return client


@pytest.mark.parametrize(("key", "kid", "alg"), [
    (RSA_A, "rsa-a", "RS256"), (RSA_B, "rsa-b", "RS256"), (EC_KEY, "ec", "ES256"), (ED_KEY, "ed", "EdDSA"),
])
async def test_every_key_in_the_set_verifies_its_tokens(file_client: Client, key: Any, kid: str, alg: str) -> None:
    assert await status(file_client, signed(key, kid, alg)) == 200


WRONG_TOKENS = [
    pytest.param(lambda: signed(RSA_A, "rsa-zz", "RS256"), id="unknown-kid"),
    pytest.param(lambda: signed(RSA_B, "rsa-a", "RS256"), id="another-keys-kid"),
    pytest.param(lambda: signed(RSA_A, "rsa-a", "RS512"), id="other-alg-than-the-jwk"),
    pytest.param(lambda: signed(RSA_B, "rsa-b", "PS256"), id="other-alg-than-derived"),
    pytest.param(lambda: signed(EC_KEY, "rsa-a", "ES256"), id="ec-token-rsa-kid"),
    pytest.param(lambda: signed(SECRET, "rsa-a", "HS256"), id="hs-secret-with-a-kid"),
    pytest.param(lambda: jwt.encode({"sub": "x"}, None, algorithm="none", headers={"kid": "rsa-a"}), id="alg-none"),
    pytest.param(lambda: _with_header(signed(RSA_A, "rsa-a", "RS256"), kid=5), id="kid-not-a-string"),
    pytest.param(lambda: _with_header(signed(RSA_A, "rsa-a", "RS256"), kid=["rsa-a"]), id="kid-a-list"),
    pytest.param(lambda: signed(RSA_A, "k" * 300, "RS256"), id="kid-too-long"),
    pytest.param(lambda: signed(RSA_A, None, "RS256"), id="no-kid-falls-back-to-the-secret"),
    pytest.param(lambda: signed(RSA_A, "rsa-a", "RS256", exp=int(time.time()) - 40), id="expired-beyond-leeway"),
]


@pytest.mark.parametrize("make_token", WRONG_TOKENS)
async def test_a_token_that_does_not_fit_its_key_is_401(file_client: Client, make_token: Any) -> None:
    assert await status(file_client, make_token()) == 401


@pytest.mark.parametrize("secret", [
    pytest.param(_pem(RSA_A).encode(), id="pem"), pytest.param(json.dumps(jwk(RSA_A, "rsa-a")).encode(), id="jwk"),
])
async def test_a_public_key_used_as_an_hmac_secret_is_401(file_client: Client, secret: bytes) -> None:
    claims = {"sub": "game-1", "scope": "scores:write", "aud": "scoreboard", "exp": int(time.time()) + 600}
    header = base64url_encode(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "rsa-a"}).encode()).decode()
    signing_input = f"{header}.{base64url_encode(json.dumps(claims).encode()).decode()}"
    mac = base64url_encode(hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()).decode()
    assert await status(file_client, f"{signing_input}.{mac}") == 401


async def test_tokens_without_kid_use_the_configured_key(file_client: Client) -> None:
    assert await status(file_client, token()) == 200


async def test_without_a_configured_key_a_kid_is_needed(make_client: Any, settings_with_file: Settings) -> None:
    client = await make_client(replace(settings_with_file, jwt_secret=None))
    assert await status(client, token()) == 401
    assert await status(client, signed(EC_KEY, "ec", "ES256")) == 200


async def test_clock_skew_within_the_leeway_is_accepted(file_client: Client) -> None:
    assert await status(file_client, signed(ED_KEY, "ed", "EdDSA", exp=int(time.time()) - 5)) == 200
    assert await status(file_client, signed(ED_KEY, "ed", "EdDSA", nbf=int(time.time()) + 5)) == 200
    assert await status(file_client, signed(ED_KEY, "ed", "EdDSA", nbf=int(time.time()) + 60)) == 401


@dataclass
class JwksServer:
    """A real local HTTP server publishing a JWKS; `keys=None` makes it fail."""

    keys: list[dict[str, Any]] | None = field(default_factory=lambda: [jwk(RSA_A, "rsa-a")])
    fetches: int = 0
    url: str = ""


@pytest.fixture
async def jwks_server(aiohttp_server: Any) -> JwksServer:
    served = JwksServer()

    async def publish(request: web.Request) -> web.Response:
        served.fetches += 1
        if served.keys is None:
            return web.Response(status=500, text="down")
        return web.json_response({"keys": served.keys})

    app = web.Application()
    app.router.add_get("/.well-known/jwks.json", publish)
    server = await aiohttp_server(app)
    served.url = str(server.make_url("/.well-known/jwks.json"))
    return served


def _url_settings(tmp_path: Path, url: str, **changes: Any) -> Settings:
    return Settings(jwt_secret=SECRET, jwt_jwks_url=url, database_url=f"sqlite:///{tmp_path}/u.db", **changes)


async def test_jwks_url_is_fetched_at_start_and_again_for_a_new_kid(
        make_client: Any, tmp_path: Path, jwks_server: JwksServer) -> None:
    client = await make_client(_url_settings(tmp_path, jwks_server.url, jwks_cooldown=0.05))
    assert jwks_server.fetches == 1
    for _ in range(5):
        assert await status(client, signed(RSA_A, "rsa-a", "RS256")) == 200
    assert jwks_server.fetches == 1  # a known kid costs no fetch
    jwks_server.keys = [jwk(RSA_A, "rsa-a"), jwk(EC_KEY, "ec-new")]  # rotation: a new key is published

    async def new_kid_accepted() -> None:  # refused while the start fetch is inside its cooldown
        assert await status(client, signed(EC_KEY, "ec-new", "ES256")) == 200

    await eventually(new_kid_accepted)
    assert jwks_server.fetches == 2  # once accepted, the new kid is known: no further fetch


async def test_unknown_kids_refresh_at_most_once_per_cooldown(
        make_client: Any, tmp_path: Path, jwks_server: JwksServer) -> None:
    client = await make_client(_url_settings(tmp_path, jwks_server.url, jwks_cooldown=60))
    assert jwks_server.fetches == 1
    random_kids = [await status(client, signed(RSA_A, f"random-{i}", "RS256")) for i in range(10)]
    assert random_kids == [401] * 10
    assert jwks_server.fetches == 1  # the start fetch opened a cooldown that no random kid can break


async def test_jwks_url_refreshes_in_the_background(make_client: Any, tmp_path: Path, jwks_server: JwksServer) -> None:
    client = await make_client(_url_settings(tmp_path, jwks_server.url, jwks_refresh=0.2, jwks_cooldown=60))
    assert await status(client, signed(RSA_A, "rsa-a", "RS256")) == 200
    jwks_server.keys = None  # a failing endpoint keeps the keys we have
    failing_since = jwks_server.fetches

    async def failed_fetch_done() -> None:  # a later fetch started, so one failing fetch has ended
        assert jwks_server.fetches >= failing_since + 2

    await eventually(failed_fetch_done)
    assert await status(client, signed(RSA_A, "rsa-a", "RS256")) == 200
    jwks_server.keys = [jwk(RSA_B, "rsa-b")]  # rsa-a revoked

    async def revoked() -> None:
        assert await status(client, signed(RSA_A, "rsa-a", "RS256")) == 401

    await eventually(revoked)
    assert await status(client, signed(RSA_B, "rsa-b", "RS256")) == 200


async def test_unreachable_jwks_url_refuses_kid_tokens_only(make_client: Any, tmp_path: Path) -> None:
    client = await make_client(_url_settings(tmp_path, "http://127.0.0.1:9/jwks.json", jwks_cooldown=0.01))
    assert await status(client, signed(RSA_A, "rsa-a", "RS256")) == 401
    assert await status(client, token()) == 200
