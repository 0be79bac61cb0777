"""`python -m app demo`: simulated trusted backends scoring players through a running service's HTTP API."""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import signal
import sys
import uuid
from dataclasses import dataclass, field

import aiohttp

from app.auth.tokens import mint_token
from app.config import Settings

SCOPES = "scores:write users:write"
NAMES = (
    "Captain Crunch", "Pixel Pirate", "Lady Lag", "Sir Spawnalot", "Null Pointer", "Glitch Witch",
    "Respawn Ron", "Combo Queen", "Turbo Tortoise", "Ctrl Alt Elite", "Loot Goblin", "Frame Drop Fran",
    "Baron von Buff", "Critical Kim", "Speedrun Sam", "Captain Camper", "Rage Quit Rita", "AFK Albert",
)
PROGRESS_EVERY = 2.0  # seconds between progress lines
MAX_IN_FLIGHT = 32  # requests outstanding at once; a slow server slows the demo instead of piling up
STREAK_EVERY = 8.0  # seconds between changes of who is on a hot streak, so the ranking keeps moving
STREAK_WEIGHT = 3.0  # how much more often a player on a streak scores than the others
DRAIN_TIMEOUT = 5.0  # seconds to let in-flight requests finish on stop


@dataclass
class Player:
    user_id: str
    name: str
    weight: float = 1.0
    parked_until: float = 0.0  # rate-limited per user: skipped until then
    gone: bool = False  # deleted by an operator (410): never scored again


@dataclass
class Tally:
    sent: int = 0
    applied: int = 0
    limited: int = 0
    errors: int = 0
    scores: dict[str, int] = field(default_factory=dict)

    def line(self) -> str:
        return f"sent={self.sent} applied={self.applied} limited={self.limited} errors={self.errors}"


class SetupFailed(Exception):
    """The service is unreachable or refuses the demo's token; the message says what to do."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default="http://127.0.0.1:8080", help="the running service's base URL")
    parser.add_argument("--rate", type=_positive, default=5.0, help="increments per second (default 5)")
    parser.add_argument("--duration", type=_positive, default=None, help="seconds to run (default: until Ctrl-C)")
    parser.add_argument("--players", type=int, choices=range(1, 101), default=12, metavar="N",
                        help="number of players, 1..100 (default 12)")
    parser.add_argument("--seed", type=int, default=None, help="random seed, for a repeatable run")


def _positive(text: str) -> float:
    value = float(text)
    if not 0 < value <= 10_000:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number in (0, 10000]")
    return value


def run(settings: Settings, args: argparse.Namespace) -> int:
    """Entry point of the subcommand: 0 when done or stopped, 1 if the service refused, 2 without a secret."""
    if not settings.jwt_secret:
        print("demo: JWT_SECRET is not set: start the server with a JWT_SECRET and run the demo with the same one",
              file=sys.stderr)
        return 2
    token = mint_token(settings, sub="demo", scopes=SCOPES)
    try:
        return asyncio.run(_main(args, token))
    except KeyboardInterrupt:  # a second Ctrl-C while in-flight requests drain
        return 130


async def _main(args: argparse.Namespace, token: str) -> int:
    rng = random.Random(args.seed)
    players = _players(args.players)
    headers = {"Authorization": f"Bearer {token}"}
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(base_url=args.url.rstrip("/") + "/", headers=headers, timeout=timeout) as http:
        demo = Demo(http, players, rng)
        try:
            await demo.setup()
        except SetupFailed as exc:
            print(f"demo: {exc}", file=sys.stderr)
            return 1
        print(f"demo: {len(players)} players at {args.rate:g} increments/s against {args.url} (Ctrl-C stops)",
              flush=True)
        elapsed = await _run_until_stopped(demo, args.rate, args.duration)
    print(f"demo: done after {elapsed:.1f}s: {demo.tally.line()}")
    return 0


def _players(count: int) -> list[Player]:
    names = [NAMES[i % len(NAMES)] + (f" {i // len(NAMES) + 1}" if i >= len(NAMES) else "") for i in range(count)]
    return [Player(user_id=f"demo-{i + 1:02d}", name=name) for i, name in enumerate(names)]


async def _run_until_stopped(demo: Demo, rate: float, duration: float | None) -> float:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = _install_stop(loop, stop)
    started = loop.time()
    if duration is not None:
        loop.call_later(duration, stop.set)
    reporter = asyncio.create_task(_report(demo, started, stop))
    try:
        await demo.send(rate, stop)
    finally:
        stop.set()
        await reporter
        for sig in signals:
            loop.remove_signal_handler(sig)
    return loop.time() - started


def _install_stop(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> list[signal.Signals]:
    """Ctrl-C (and SIGTERM) end the run gracefully: in-flight requests finish, then the summary."""
    installed: list[signal.Signals] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # e.g. Windows: KeyboardInterrupt instead
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
    return installed


async def _report(demo: Demo, started: float, stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    while not await _wait(stop, PROGRESS_EVERY):
        print(f"demo: {loop.time() - started:5.1f}s {demo.tally.line()} {demo.leader()}", flush=True)


async def _wait(event: asyncio.Event, seconds: float) -> bool:
    """Sleep `seconds` or until `event` is set; True if it is set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), max(0.0, seconds))
    return event.is_set()


class Demo:
    def __init__(self, http: aiohttp.ClientSession, players: list[Player], rng: random.Random) -> None:
        self._http = http
        self._players = players
        self._rng = rng
        self._paused_until = 0.0  # the per-caller limit refused us: nobody scores until then
        self._slots = asyncio.Semaphore(MAX_IN_FLIGHT)
        self.tally = Tally()

    async def setup(self) -> None:
        """Check the service answers, then give every player their display name (once per run)."""
        try:
            async with self._http.get("healthz") as response:
                response.raise_for_status()
            for player in self._players:
                await self._name(player)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise SetupFailed(f"cannot reach the service ({exc}): is `python -m app` running there?") from None

    async def _name(self, player: Player) -> None:
        async with self._http.put(f"users/{player.user_id}", json={"displayName": player.name}) as response:
            if response.status in (401, 403):
                raise SetupFailed(f"the service refused the demo's token ({response.status}): "
                                  "start the server and the demo with the same JWT_SECRET")
            response.raise_for_status()
            self.tally.scores[player.user_id] = (await response.json())["score"]

    async def send(self, rate: float, stop: asyncio.Event) -> None:
        """Paced sends at `rate` per second until `stop`, then let the requests in flight finish."""
        loop = asyncio.get_running_loop()
        tasks: set[asyncio.Task[None]] = set()
        next_at = streak_at = loop.time()
        while not await _wait(stop, next_at - loop.time()):
            next_at = max(next_at + 1 / rate, loop.time() - 1.0)  # after a stall, catch up by at most 1 s
            if loop.time() >= streak_at:
                self._new_streak()
                streak_at = loop.time() + STREAK_EVERY
            player = self._pick(loop.time())
            if player is not None:
                await self._slots.acquire()
                task = asyncio.create_task(self._increment(player))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        await _drain(tasks)

    def _new_streak(self) -> None:
        for player in self._players:
            player.weight = 1.0
        hot = self._rng.sample(self._players, k=min(2, len(self._players)))
        for player in hot:
            player.weight = STREAK_WEIGHT

    def _pick(self, now: float) -> Player | None:
        if now < self._paused_until:
            return None
        ready = [p for p in self._players if not p.gone and p.parked_until <= now]
        if not ready:
            return None
        return self._rng.choices(ready, weights=[p.weight for p in ready])[0]

    async def _increment(self, player: Player) -> None:
        body = {"userId": player.user_id, "actionId": f"demo-{uuid.uuid4().hex}"}
        self.tally.sent += 1
        try:
            async with self._http.post("scores/increment", json=body) as response:
                await self._record(player, response)
        except (aiohttp.ClientError, TimeoutError):
            self.tally.errors += 1
        finally:
            self._slots.release()

    async def _record(self, player: Player, response: aiohttp.ClientResponse) -> None:
        if response.status == 200:
            result = await response.json()
            self.tally.applied += result["applied"]
            self.tally.scores[player.user_id] = result["newScore"]
        elif response.status == 429:
            self.tally.limited += 1
            await self._back_off(player, response)
        else:
            self.tally.errors += 1
            player.gone = response.status == 410

    async def _back_off(self, player: Player, response: aiohttp.ClientResponse) -> None:
        """Honour Retry-After: for this player on a per-user limit, for everyone on the per-caller one."""
        until = asyncio.get_running_loop().time() + _retry_after(response)
        refused_by = (await response.json()).get("error", {}).get("details", {}).get("scope")
        if refused_by == "caller":
            self._paused_until = max(self._paused_until, until)
        else:
            player.parked_until = max(player.parked_until, until)

    def leader(self) -> str:
        if not self.tally.scores:
            return ""
        names = {p.user_id: p.name for p in self._players}
        user_id = max(self.tally.scores, key=lambda u: self.tally.scores[u])
        return f"leader: {names[user_id]} ({self.tally.scores[user_id]})"


def _retry_after(response: aiohttp.ClientResponse) -> float:
    try:
        return max(0.0, float(response.headers.get("Retry-After", "1")))
    except ValueError:
        return 1.0


async def _drain(tasks: set[asyncio.Task[None]]) -> None:
    if not tasks:
        return
    _, pending = await asyncio.wait(set(tasks), timeout=DRAIN_TIMEOUT)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
