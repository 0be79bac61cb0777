"""Caller authentication: a Bearer JWT verified with the one configured key and algorithm."""
from __future__ import annotations

import time
from dataclasses import dataclass

import jwt

from app.config import Settings
from app.errors import Forbidden, Unauthenticated

LEEWAY_SECONDS = 10  # clock skew between the caller's host and ours


@dataclass(frozen=True, slots=True)
class Caller:
    sub: str
    scopes: frozenset[str]

    def require(self, scope: str) -> None:
        if scope not in self.scopes:
            raise Forbidden(f"the token lacks the scope {scope!r}", {"scope": scope})


class Verifier:
    def __init__(self, settings: Settings) -> None:
        self._key = settings.jwt_public_key or settings.jwt_secret or ""
        self._algorithm = settings.jwt_algorithm
        self._audience = settings.jwt_audience
        self._issuer = settings.jwt_issuer

    def caller(self, authorization: str | None) -> Caller:
        """The caller named by an `Authorization: Bearer <JWT>` header, or Unauthenticated."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("an Authorization: Bearer <token> header is required")
        claims = self._decode(token.strip())
        sub, scope = claims.get("sub"), claims.get("scope", "")
        if not isinstance(sub, str) or not sub or not isinstance(scope, str):
            raise Unauthenticated("the token needs a string 'sub' and a space-separated 'scope'")
        return Caller(sub=sub, scopes=frozenset(scope.split()))

    def _decode(self, token: str) -> dict[str, object]:
        required = ["exp", "aud", "sub"] + (["iss"] if self._issuer else [])
        try:
            return jwt.decode(
                token, self._key, algorithms=[self._algorithm], audience=self._audience,
                issuer=self._issuer, leeway=LEEWAY_SECONDS, options={"require": required},
            )
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"invalid token: {exc}") from None


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
