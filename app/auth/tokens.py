"""Caller authentication: a Bearer JWT verified with the key its `kid` names, or the one configured key."""
from __future__ import annotations

import contextlib
import re
import time
from dataclasses import dataclass

import jwt

from app.auth.keyring import KeyRing, VerificationKey, load_jwks_file
from app.config import Settings
from app.errors import Forbidden, Unauthenticated

LEEWAY_SECONDS = 10  # clock skew between the caller's host and ours; policy: at most 30 s
KID_MAX_LENGTH = 256
CACHE_SIZE = 10_000  # verified tokens remembered; a trusted backend reuses a handful
# The caller's id is stored and logged: printable, storable as UTF-8 (no lone surrogates), bounded.
SUB = re.compile(r"^[^\x00-\x1f\x7f-\x9f\ud800-\udfff]{1,256}\Z")
# Fixed messages, most specific first: PyJWT's own may quote parts of the token, a credential.
REASONS: tuple[tuple[type[jwt.PyJWTError], str], ...] = (
    (jwt.ExpiredSignatureError, "the token has expired"),
    (jwt.ImmatureSignatureError, "the token is not valid yet"),
    (jwt.InvalidAudienceError, "the token is for another audience"),
    (jwt.InvalidIssuerError, "the token is from another issuer"),
    (jwt.MissingRequiredClaimError, "the token lacks a required claim (exp, aud, sub, and iss when set)"),
    (jwt.InvalidSignatureError, "the token's signature does not verify"),
    (jwt.InvalidAlgorithmError, "the token's algorithm is not its key's"),
)


@dataclass(frozen=True, slots=True)
class Caller:
    sub: str
    scopes: frozenset[str]

    def require(self, scope: str) -> None:
        if scope not in self.scopes:
            raise Forbidden(f"the token lacks the scope {scope!r}", {"scope": scope})


class Verifier:
    def __init__(self, settings: Settings) -> None:
        self._keys = KeyRing(
            _configured_key(settings),
            load_jwks_file(settings.jwt_jwks_file) if settings.jwt_jwks_file else None,
            settings.jwt_jwks_url, settings.jwks_refresh, settings.jwks_cooldown,
        )
        self._audience = settings.jwt_audience
        self._issuer = settings.jwt_issuer
        # A key that leaves the JWKS stops being honoured through the cache within one refresh period.
        self._cache = _VerifiedTokens(CACHE_SIZE, settings.jwks_refresh)

    def refreshing(self) -> contextlib.AbstractAsyncContextManager[None]:
        """Keep a JWKS URL's keys fresh while the app runs (a no-op without one)."""
        return self._keys.refreshing()

    async def caller(self, authorization: str | None) -> Caller:
        """The caller named by an `Authorization: Bearer <JWT>` header, or Unauthenticated."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("an Authorization: Bearer <token> header is required")
        cached = self._cache.get(token)
        if cached is None:
            cached = await self._verify(token.strip())
            self._cache.put(token, cached)
        return cached[0]

    async def _verify(self, token: str) -> tuple[Caller, float]:
        """The caller and the token's expiry, from a full verification."""
        key = await self._keys.find(_kid(token))
        if key is None:
            raise Unauthenticated("no verification key for this token (unknown kid?)")
        claims = self._decode(token, key)
        sub, scope = claims.get("sub"), claims.get("scope", "")
        if not isinstance(sub, str) or not SUB.match(sub) or not isinstance(scope, str):
            raise Unauthenticated("the token needs a 'sub' of 1..256 printable characters and a string 'scope'")
        return Caller(sub=sub, scopes=frozenset(scope.split())), float(claims["exp"])  # type: ignore[arg-type]

    def _decode(self, token: str, key: VerificationKey) -> dict[str, object]:
        required = ["exp", "aud", "sub"] + (["iss"] if self._issuer else [])
        try:
            return jwt.decode(
                token, key.key, algorithms=[key.algorithm], audience=self._audience,
                issuer=self._issuer, leeway=LEEWAY_SECONDS, options={"require": required},
            )
        except jwt.PyJWTError as exc:
            reason = next((text for kind, text in REASONS if isinstance(exc, kind)), "the token is malformed")
            raise Unauthenticated(f"invalid token: {reason}") from None


class _VerifiedTokens:
    """Callers of tokens verified before, each until its `exp` (at most `ttl` seconds), at most `size`.

    Keyed by the whole token, signature included: only the very token that verified is trusted.
    """

    def __init__(self, size: int, ttl: float) -> None:
        self._size = size
        self._ttl = ttl
        self._entries: dict[str, tuple[Caller, float]] = {}

    def get(self, token: str) -> tuple[Caller, float] | None:
        entry = self._entries.get(token)
        if entry is not None and entry[1] <= time.time():
            del self._entries[token]
            return None
        return entry

    def put(self, token: str, verified: tuple[Caller, float]) -> None:
        if len(self._entries) >= self._size:
            del self._entries[next(iter(self._entries))]  # the oldest: insertion order
        self._entries[token] = (verified[0], min(verified[1], time.time() + self._ttl))


def _configured_key(settings: Settings) -> VerificationKey | None:
    """JWT_PUBLIC_KEY or JWT_SECRET with its pinned algorithm: the key for tokens without a kid."""
    secret = settings.jwt_public_key or settings.jwt_secret
    return VerificationKey(secret, settings.jwt_algorithm) if secret else None


def _kid(token: str) -> str | None:
    try:
        kid = jwt.get_unverified_header(token).get("kid")
    except jwt.PyJWTError:
        raise Unauthenticated("invalid token: the token is malformed") from None
    if kid is not None and (not isinstance(kid, str) or not 0 < len(kid) <= KID_MAX_LENGTH):
        raise Unauthenticated("invalid token: 'kid' must be a short string")
    return kid


def mint_token(settings: Settings, sub: str, scopes: str, ttl: int = 3600) -> str:
    """An HS256 token signed with JWT_SECRET, for local use and the demo."""
    if not settings.jwt_secret:
        raise ValueError("JWT_SECRET is not set")
    claims: dict[str, object] = {
        "sub": sub, "scope": scopes, "aud": settings.jwt_audience, "exp": int(time.time()) + ttl,
    }
    if settings.jwt_issuer:
        claims["iss"] = settings.jwt_issuer
    return jwt.encode(claims, settings.jwt_secret, algorithm="HS256")
