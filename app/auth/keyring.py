"""Verification keys by `kid`: a JWKS file or URL (fetched off the event loop), and the one configured key."""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jwt import PyJWK, PyJWKClient, PyJWTError
from jwt.exceptions import PyJWKClientError

log = logging.getLogger(__name__)

# The algorithms each public key type may verify: the key pins one, a token cannot choose.
# No "oct": a JWKS publishes public keys; a shared secret stays in JWT_SECRET.
ALGORITHMS = {
    "RSA": {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"},
    "EC": {"ES256", "ES384", "ES512"},
    "OKP": {"EdDSA"},
}
FETCH_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class VerificationKey:
    """A key and the one algorithm it verifies."""

    key: Any
    algorithm: str


def parse_jwks(data: object) -> dict[str, VerificationKey]:
    """Signing keys by kid from a JWKS document; ValueError for anything else."""
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise ValueError('not a JWKS: expected {"keys": [...]}')
    keys: dict[str, VerificationKey] = {}
    for index, jwk in enumerate(data["keys"]):
        if isinstance(jwk, dict) and jwk.get("use", "sig") != "sig":
            continue  # encryption keys may share the document; they never verify tokens
        kid, key = _parse_jwk(jwk, index)
        if kid in keys:
            raise ValueError(f"key {kid!r} appears twice")
        keys[kid] = key
    if not keys:
        raise ValueError("the JWKS holds no signing key")
    return keys


def _parse_jwk(jwk: object, index: int) -> tuple[str, VerificationKey]:
    # Messages name the kid only: PyJWT's own would quote the whole key.
    if not isinstance(jwk, dict) or not isinstance(jwk.get("kid"), str) or not jwk["kid"]:
        raise ValueError(f"key #{index} needs a non-empty string kid")
    kid, kty, alg = jwk["kid"], jwk.get("kty"), jwk.get("alg")
    if not isinstance(kty, str) or kty not in ALGORITHMS:
        raise ValueError(f"key {kid!r}: kty must be RSA, EC or OKP (public keys only)")
    if "d" in jwk:
        raise ValueError(f"key {kid!r} holds private key material: publish public keys only")
    if alg is not None and (not isinstance(alg, str) or alg not in ALGORITHMS[kty]):
        # checked before PyJWK, which fails oddly on "none"
        raise ValueError(f"key {kid!r}: alg {alg!r} does not fit kty {kty}")
    try:
        parsed = PyJWK(jwk)
    except (PyJWTError, ValueError, TypeError, KeyError):  # KeyError: a missing member (n, e, x, crv)
        raise ValueError(f"key {kid!r} is not a usable {kty} key") from None
    if parsed.algorithm_name not in ALGORITHMS[kty]:  # derived from the curve, e.g. secp256k1
        raise ValueError(f"key {kid!r}: alg {parsed.algorithm_name!r} does not fit kty {kty}")
    return kid, VerificationKey(parsed.key, parsed.algorithm_name)


def load_jwks_file(path: str) -> dict[str, VerificationKey]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read {path}: {type(exc).__name__}") from None
    try:
        data = json.loads(text)
    except ValueError:
        raise ValueError(f"{path} is not JSON") from None
    return parse_jwks(data)


class KeyRing:
    """Keys by kid, held in memory: a known kid costs no I/O.

    A JWKS URL is fetched at start, every `refresh_every` seconds, and when a token names an
    unknown kid, at most once per `cooldown` seconds so random kids cannot flood the issuer.
    """

    def __init__(self, default: VerificationKey | None, keys: Mapping[str, VerificationKey] | None = None,
                 url: str | None = None, refresh_every: float = 300.0, cooldown: float = 10.0) -> None:
        self._default = default
        self._keys = dict(keys or {})
        self._client = None if url is None else PyJWKClient(url, cache_jwk_set=False, timeout=FETCH_TIMEOUT)
        self._refresh_every = refresh_every
        self._cooldown = cooldown
        self._fetched_at = float("-inf")
        self._lock = asyncio.Lock()

    async def find(self, kid: str | None) -> VerificationKey | None:
        """The key for a token's kid; without a kid, or without a JWKS, the configured key."""
        if kid is None or (self._client is None and not self._keys):
            return self._default
        if kid not in self._keys and self._client is not None:
            await self._refresh(self._client, self._cooldown)
        return self._keys.get(kid)

    @contextlib.asynccontextmanager
    async def refreshing(self) -> AsyncIterator[None]:
        """Fetch the JWKS now and keep it fresh in the background (revoked keys leave, new ones arrive)."""
        if self._client is None:
            yield
            return
        await self._refresh(self._client, cooldown=0)
        task = asyncio.create_task(self._refresh_periodically(self._client), name="jwks-refresh")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _refresh_periodically(self, client: PyJWKClient) -> None:
        while True:
            await asyncio.sleep(self._refresh_every)
            await self._refresh(client, cooldown=0)

    async def _refresh(self, client: PyJWKClient, cooldown: float) -> None:
        async with self._lock:  # concurrent unknown kids wait for one fetch
            if time.monotonic() - self._fetched_at < cooldown:
                return
            self._fetched_at = time.monotonic()
            try:
                self._keys = parse_jwks(await asyncio.to_thread(client.fetch_data))
            except (PyJWKClientError, ValueError, OSError) as exc:
                log.warning("JWKS not refreshed from %s, keeping %d key(s): %s",
                            client.uri, len(self._keys), exc)
