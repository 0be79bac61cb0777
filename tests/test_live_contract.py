"""One contract for the live Board and Bus, run against every backend (in-process and Redis)."""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from uuid import uuid4

import pytest
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from app.domain import Entry
from app.live import CHANGED, RESYNC, Board, Bus, LiveUnavailable, ReadModelIncomplete, changed, open_live
from app.live.redis import RedisBoard, RedisBus
from tests.conftest import eventually
from tests.services import PrivateRedis, require_redis

BACKENDS = [pytest.param("memory", id="memory"), pytest.param("redis", id="redis")]
WAIT = 5.0


@pytest.fixture
def prefix() -> str:
    return f"test:{uuid4().hex}:"


async def _drop_keys(client: Redis, prefix: str) -> None:
    keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
    if keys:
        await client.delete(*keys)


@pytest.fixture
async def redis_client(prefix: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(require_redis())
    try:
        yield client
    finally:
        await _drop_keys(client, prefix)
        await client.aclose()


@pytest.fixture(params=BACKENDS)
async def live(request: pytest.FixtureRequest, prefix: str) -> AsyncIterator[tuple[Board, Bus]]:
    url = None if request.param == "memory" else require_redis()
    async with open_live(url, prefix) as opened:
        await opened.board.set_mark(0)  # a complete (empty) board: reads answer
        try:
            yield opened.board, opened.bus
        finally:
            if opened.redis is not None:
                await _drop_keys(opened.redis, prefix)


@pytest.fixture
def board(live: tuple[Board, Bus]) -> Board:
    return live[0]


@pytest.fixture
def bus(live: tuple[Board, Bus]) -> Bus:
    return live[1]


def e(user_id: str, score: int, seq: int, name: str | None = None) -> Entry:
    return Entry(user_id, name, score, seq)


async def ids(board: Board, limit: int = 50) -> list[str]:
    return [entry.user_id for entry in await board.top(limit)]


async def next_message(messages: AsyncIterator[str], within: float = WAIT) -> str:
    async with asyncio.timeout(within):
        return await anext(messages)


@asynccontextmanager
async def listening(bus: Bus) -> AsyncIterator[AsyncIterator[str]]:
    """Subscribe; on Redis, wait until the subscription is live (it announces itself with RESYNC)."""
    async with bus.subscribe() as messages:
        if isinstance(bus, RedisBus):
            assert await next_message(messages) == RESYNC
        yield messages


# Board


async def test_top_orders_by_score_then_earlier_seq(board: Board) -> None:
    await board.upsert([e("late", 10, 7), e("low", 5, 1), e("early", 10, 3), e("high", 20, 9)])
    assert await ids(board) == ["high", "early", "late", "low"]
    assert await board.top(2) == [e("high", 20, 9), e("early", 10, 3)]


async def test_scores_order_exactly_across_the_signed_64_bit_range(board: Board) -> None:
    scores = [2**63 - 1, 2**63 - 2, 2**53 + 1, 2**53, 1, 0, -1, -(2**53) - 1, -(2**63) + 1, -(2**63)]
    await board.upsert([e(f"u{i}", score, 100 - i) for i, score in reversed(list(enumerate(scores)))])
    assert [entry.score for entry in await board.top(50)] == scores
    standing = await board.standing("u3", 0)
    assert standing is not None and (standing.rank, standing.entry.score) == (4, 2**53)


async def test_seqs_beyond_2_53_break_ties_exactly(board: Board) -> None:
    await board.upsert([e("b", 1, 2**62 + 1), e("a", 1, 2**62), e("c", 1, -(2**63))])
    assert await ids(board) == ["c", "a", "b"]
    await board.upsert([e("a", 2, 2**62 - 1)])  # older than the stored 2**62: ignored
    assert (await board.top(1))[0] == e("c", 1, -(2**63))


async def test_out_of_order_upsert_never_moves_a_user_back(board: Board) -> None:
    await board.upsert([e("u", 30, 5, "new")])
    await board.upsert([e("u", 10, 4, "old")])
    assert await board.top(10) == [e("u", 30, 5, "new")]


async def test_equal_seq_updates_only_the_name(board: Board) -> None:
    await board.upsert([e("u", 30, 5, "alice"), e("v", 20, 6)])
    await board.upsert([e("u", 30, 5, "Zoë 🎉"), e("v", 20, 6, "bob")])
    assert await board.top(10) == [e("u", 30, 5, "Zoë 🎉"), e("v", 20, 6, "bob")]
    await board.upsert([e("u", 30, 5, None)])
    assert (await board.top(1))[0].display_name is None


async def test_removed_user_ignores_later_upserts(board: Board) -> None:
    await board.upsert([e("u", 30, 5, "alice"), e("v", 20, 6)])
    await board.remove("u")
    await board.remove("never-seen")
    await board.upsert([e("u", 40, 9, "alice"), e("never-seen", 1, 10)])
    assert await ids(board) == ["v"]
    assert await board.standing("u", 3) is None
    assert await board.standing("never-seen", 0) is None


async def test_standing_around_clips_at_top_and_bottom(board: Board) -> None:
    await board.upsert([e(f"u{rank}", 100 - rank, rank) for rank in range(1, 6)])
    first = await board.standing("u1", 2)
    assert first is not None and first.rank == 1
    assert [x.user_id for x in first.around] == ["u1", "u2", "u3"]
    last = await board.standing("u5", 2)
    assert last is not None and (last.rank, last.entry) == (5, e("u5", 95, 5))
    assert [x.user_id for x in last.around] == ["u3", "u4", "u5"]
    middle = await board.standing("u3", 1)
    assert middle is not None and [x.user_id for x in middle.around] == ["u2", "u3", "u4"]
    alone = await board.standing("u4", 0)
    assert alone is not None and (alone.rank, alone.around) == (4, (e("u4", 96, 4),))
    assert await board.standing("nobody", 2) is None


async def test_top_limit_beyond_size_and_nonpositive(board: Board) -> None:
    assert await board.top(10) == []
    await board.upsert([e("a", 1, 1), e("b", 2, 2)])
    assert await ids(board, 1000) == ["b", "a"]
    assert await board.top(0) == []
    assert await board.top(-1) == []


async def test_large_batches_are_applied_whole(board: Board) -> None:
    await board.upsert(e(f"u{i}", i, i) for i in range(1234))
    assert await ids(board, 2) == ["u1233", "u1232"]
    standing = await board.standing("u0", 1)
    assert standing is not None and standing.rank == 1234 and len(standing.around) == 2
    await board.upsert(e(f"u{i}", -i, 2000 + i) for i in range(1100))  # newer events: all move down
    assert await ids(board, 1) == ["u1233"]
    moved = await board.standing("u0", 0)
    assert moved is not None and moved.rank == 1234 - 1100 + 1
    last = await board.standing("u1099", 0)
    assert last is not None and last.rank == 1234


# Bus


async def test_publish_reaches_every_local_subscriber(bus: Bus) -> None:
    async with listening(bus) as first, bus.subscribe() as second:
        await bus.publish("changed")
        assert await next_message(first) == "changed"
        assert await next_message(second) == "changed"


async def test_a_local_subscriber_hears_of_an_upsert_once_it_is_written(board: Board, bus: Bus) -> None:
    """A hub that reads the board when it hears the change must find the change there."""
    async with listening(bus) as messages:
        written = asyncio.create_task(board.upsert([e("a", 5, 1)], announce=bus))
        assert await next_message(messages) == CHANGED
        assert written.done()
        assert await ids(board) == ["a"]


async def test_an_upsert_announces_the_message_it_is_given(board: Board, bus: Bus) -> None:
    async with listening(bus) as messages:
        await board.upsert([e("a", 5, 1)], announce=bus, message=changed(["bonus"]))
        assert await next_message(messages) == "changed bonus"


async def test_unread_changes_merge_into_one_that_names_every_action(bus: Bus) -> None:
    async with listening(bus) as messages:
        await bus.publish(changed(["b", "a"]))
        await bus.publish(changed(["c", "a"]))
        assert await next_message(messages) == "changed a b c"
        await bus.publish(changed(["a"]))
        await bus.publish(CHANGED)  # about every board: it absorbs the narrower one, in either order
        await bus.publish(changed(["b"]))
        assert await next_message(messages) == CHANGED


async def test_full_queue_never_blocks_publish_and_newest_wins(bus: Bus) -> None:
    async with listening(bus) as messages:
        async with asyncio.timeout(WAIT):
            for i in range(500):
                await bus.publish(str(i))
        assert await next_message(messages) == "499"


async def test_subscription_ends_on_exit(bus: Bus) -> None:
    async with listening(bus) as ended:
        pass
    async with listening(bus) as messages:
        await bus.publish("after-exit")
        assert await next_message(messages) == "after-exit"  # delivered to every local subscriber at once
        with pytest.raises(TimeoutError):
            await next_message(ended, 0)  # a message already queued would be returned without waiting


async def test_redis_subscription_leaves_the_channel_on_exit(redis_client: Redis, prefix: str) -> None:
    bus, channel = RedisBus(redis_client, prefix), f"{prefix}changes"

    async def subscribers(expected: int) -> None:
        assert dict(await redis_client.pubsub_numsub(channel)) == {channel.encode(): expected}

    async with listening(bus), bus.subscribe():
        await subscribers(1)  # one Redis subscription fanned out locally
    await eventually(lambda: subscribers(0))


# Redis only: several processes, and Redis going away


async def test_an_upsert_tells_another_process_which_actions_changed(redis_client: Redis, prefix: str) -> None:
    other = Redis.from_url(require_redis())
    try:
        here, there = RedisBus(redis_client, prefix), RedisBus(other, prefix)
        async with listening(there) as theirs:
            await RedisBoard(redis_client, prefix).upsert([e("a", 5, 1)], announce=here, message=changed(["x"]))
            assert await next_message(theirs) == "changed x"
    finally:
        await other.aclose()


async def test_publish_reaches_another_process(redis_client: Redis, prefix: str) -> None:
    other = Redis.from_url(require_redis(), decode_responses=True)
    try:
        here, there = RedisBus(redis_client, prefix), RedisBus(other, prefix)
        async with listening(here) as mine, listening(there) as theirs:
            await here.publish("from-here")
            assert await next_message(theirs) == "from-here"
            assert await next_message(mine) == "from-here"
            with pytest.raises(TimeoutError):  # our own message is not delivered twice
                await next_message(mine, 0.3)
    finally:
        await other.aclose()


async def test_board_reads_with_a_decoding_client(prefix: str) -> None:
    client = Redis.from_url(require_redis(), decode_responses=True)
    try:
        board = RedisBoard(client, prefix)
        await board.set_mark(0)
        await board.upsert([e("u", 2**60, 2**60, "Zoë")])
        assert await board.top(1) == [e("u", 2**60, 2**60, "Zoë")]
    finally:
        await _drop_keys(client, prefix)
        await client.aclose()



async def test_survives_a_redis_restart(private_redis: PrivateRedis, prefix: str) -> None:
    # few retries: the client's own retry policy only delays LiveUnavailable
    clients = [Redis(port=private_redis.port, retry=Retry(NoBackoff(), 1)) for _ in range(2)]
    board, publisher = RedisBoard(clients[0], prefix), RedisBus(clients[0], prefix)
    bus = RedisBus(clients[1], prefix)
    try:
        async with listening(bus) as messages:
            await private_redis.kill()
            await _assert_unavailable(board, publisher)
            await private_redis.start()
            assert await next_message(messages, 10) == RESYNC  # state may have changed meanwhile
            async with asyncio.timeout(10):
                while await _publish_and_poll(publisher, messages) != "back":
                    pass
            await board.upsert([e("u", 1, 1)])
            with pytest.raises(ReadModelIncomplete):  # restarted empty: no mark, not the truth
                await ids(board)
            await board.set_mark(0)
            assert await ids(board) == ["u"]
    finally:
        for client in clients:
            await client.aclose()


async def _assert_unavailable(board: Board, bus: Bus) -> None:
    calls: list[Callable[[], Awaitable[object]]] = [
        lambda: board.top(10),
        lambda: board.standing("u", 1),
        lambda: board.upsert([e("u", 1, 1)]),
        lambda: board.remove("u"),
        lambda: bus.publish("lost"),
    ]
    for call in calls:
        with pytest.raises(LiveUnavailable):
            await call()


async def _publish_and_poll(bus: Bus, messages: AsyncIterator[str]) -> str | None:
    # a message published before the subscriber is back is lost: publish until one arrives
    await bus.publish("back")
    try:
        return await next_message(messages, 0.25)
    except TimeoutError:
        return None


async def test_resyncs_when_the_client_reconnects_by_itself(private_redis: PrivateRedis, prefix: str) -> None:
    # with its default retries redis-py reconnects and re-subscribes inside get_message
    clients = [Redis(port=private_redis.port) for _ in range(2)]
    publisher, bus = RedisBus(clients[0], prefix), RedisBus(clients[1], prefix)
    try:
        async with listening(bus) as messages:
            await private_redis.kill()
            await private_redis.start()
            assert await next_message(messages, 10) == RESYNC
            async with asyncio.timeout(10):
                while await _publish_and_poll(publisher, messages) != "back":
                    pass
    finally:
        for client in clients:
            await client.aclose()


# Read model health: the mark, name versions, the lease, RESYNC


def named(user_id: str, score: int, seq: int, name: str | None, version: int) -> Entry:
    return Entry(user_id, name, score, seq, name_version=version)


async def test_an_older_name_never_overwrites_a_newer_one(board: Board) -> None:
    await board.upsert([named("u", 10, 5, "renamed", 2)])
    await board.upsert([named("u", 20, 6, "stale", 1)])  # a newer score read an older name
    assert await board.top(1) == [e("u", 20, 6, "renamed")]
    await board.upsert([named("u", 20, 6, "again", 3), named("u", 5, 1, "older-event-newer-name", 4)])
    assert await board.top(1) == [e("u", 20, 6, "older-event-newer-name")]


async def test_reads_refuse_until_the_board_has_a_mark(prefix: str) -> None:
    async with open_live(None, prefix) as live:
        await live.board.upsert([e("u", 1, 1)])
        assert await live.board.mark() is None
        for read in (live.board.top(1), live.board.standing("u", 0)):
            with pytest.raises(ReadModelIncomplete):
                await read
        await live.board.set_mark(42)
        assert (await live.board.mark(), await ids(live.board)) == (42, ["u"])


async def test_one_lease_holder_at_a_time(redis_client: Redis, prefix: str) -> None:
    async with open_live(require_redis(), prefix) as first, open_live(require_redis(), prefix) as second:
        assert await first.lease.claim(5)
        assert not await second.lease.claim(5)
        assert await first.lease.claim(5)  # the holder extends it
        await second.lease.release()  # not the holder: nothing happens
        assert not await second.lease.claim(5)
        await first.lease.release()
        assert await second.lease.claim(5)
        await second.lease.release()


async def test_a_change_never_folds_away_an_unread_resync(bus: Bus) -> None:
    async with listening(bus) as messages:
        if isinstance(bus, RedisBus):
            bus._fanout.deliver(RESYNC)  # what a reconnect delivers
        else:
            await bus.publish(RESYNC)
        await bus.publish("changed")
        await bus.publish(changed(["a"]))
        assert await next_message(messages) == RESYNC


@pytest.mark.parametrize("backend", BACKENDS)
async def test_the_applied_log_keeps_written_keys_until_the_mark_passes_them(backend: str, prefix: str) -> None:
    async with open_live(None if backend == "memory" else require_redis(), prefix) as live:
        try:
            await live.board.set_mark(10)
            await live.board.upsert([e("a", 1, 1)], applied=[12, 15])
            await live.board.upsert([e("b", 2, 2)])  # a write that records nothing
            assert await live.applied.unapplied([11, 12, 13, 15]) == [11, 13]
            await live.board.set_mark(13)  # a repair moved past 12: no one asks about it again
            assert await live.applied.unapplied([12, 15, 16]) == [12, 16]
        finally:
            if live.redis is not None:
                await _drop_keys(live.redis, prefix)
