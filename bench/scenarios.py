"""What is measured: the baseline (/healthz) and the three API calls, as request functions."""
from __future__ import annotations

import random
import uuid

import aiohttp

from bench.load import Request

USERS = 200  # players on the board during a run


def user_id(number: int) -> str:
    return f"bench-{number:04d}"


def healthz() -> Request:
    async def request(session: aiohttp.ClientSession) -> bool:
        async with session.get("/healthz") as response:
            await response.read()
            return response.status == 200

    return request


def increment(token: str, rng: random.Random) -> Request:
    """A new actionId each time, for a random one of the users: every request applies."""
    headers = {"Authorization": f"Bearer {token}"}

    async def request(session: aiohttp.ClientSession) -> bool:
        body = {"userId": user_id(rng.randrange(USERS)), "actionId": uuid.uuid4().hex}
        async with session.post("/scores/increment", json=body, headers=headers) as response:
            await response.read()
            return response.status == 200

    return request


def top() -> Request:
    async def request(session: aiohttp.ClientSession) -> bool:
        async with session.get("/top") as response:
            await response.read()
            return response.status == 200

    return request


def score(rng: random.Random) -> Request:
    async def request(session: aiohttp.ClientSession) -> bool:
        async with session.get(f"/scores/{user_id(rng.randrange(USERS))}") as response:
            await response.read()
            return response.status == 200

    return request


async def seed(session: aiohttp.ClientSession, token: str) -> None:
    """Every user named before the run, so reads find them and /top has display names to render."""
    headers = {"Authorization": f"Bearer {token}"}
    for number in range(USERS):
        body = {"displayName": f"Bench Player {number}"}
        async with session.put(f"/users/{user_id(number)}", json=body, headers=headers) as response:
            response.raise_for_status()
