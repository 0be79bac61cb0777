"""Verified tokens are remembered until their `exp`, and only the very token that verified."""
from __future__ import annotations

import time

import pytest

from app.auth.tokens import Caller, Verifier, _VerifiedTokens
from app.config import Settings
from app.errors import Unauthenticated
from tests.conftest import SECRET, token


async def test_a_verified_token_is_answered_from_the_cache_and_a_forged_one_is_not() -> None:
    verifier = Verifier(Settings(jwt_secret=SECRET))
    good = token("scores:write", sub="game-7")
    first = await verifier.caller(f"Bearer {good}")
    assert await verifier.caller(f"Bearer {good}") is first  # the cached Caller itself
    head, payload, signature = good.split(".")
    forged = f"{head}.{payload}.{signature[:-2]}{'AA' if signature[-2:] != 'AA' else 'BB'}"
    with pytest.raises(Unauthenticated):
        await verifier.caller(f"Bearer {forged}")


def test_an_entry_ends_at_the_token_exp_and_the_cache_is_bounded() -> None:
    cache = _VerifiedTokens(size=2, ttl=300)
    caller = Caller("game-1", frozenset({"scores:write"}))
    cache.put("expired", (caller, time.time() - 1))
    assert cache.get("expired") is None
    for name in ("a", "b", "c"):
        cache.put(name, (caller, time.time() + 60))
    assert cache.get("a") is None and cache.get("c") is not None  # the oldest made room
