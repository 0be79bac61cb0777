"""Two hosts: two service processes in two network namespaces of this machine, each with its own
address on a veth pair, reaching PostgreSQL and Redis through TCP proxies in the root namespace.
An increment through one host reaches a stream on the other, with the same version.

Needs root and iproute2 (CI runs as root); the namespaces are removed even when the test fails.
"""
from __future__ import annotations

import asyncio
import os
import random
import shutil
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import pytest

from tests.conftest import SECRET, PostgresSchema, auth
from tests.services import require_redis
from tests.sse import SSEReader
from tests.tcp_proxy import TcpProxy

WAIT = 15.0
APP_PORT = 8080  # the same port on both hosts, as on two machines


def _require_netns() -> None:
    reason = None
    if os.geteuid() != 0:
        reason = "network namespaces need root"
    elif shutil.which("ip") is None:
        reason = "iproute2 (ip) is not installed"
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; CI needs it", pytrace=False)
        pytest.skip(reason)


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@dataclass(frozen=True)
class Host:
    namespace: str
    gateway: str  # the root namespace's end of the veth pair: where the proxies listen
    address: str  # the host's own address


@contextmanager
def host(name: str, subnet: int) -> Iterator[Host]:
    """A namespace joined to the root namespace by a veth pair; deleted (with the pair) on exit."""
    namespace, outside, inside = f"sb-{name}", f"sbr-{name}", f"sbn-{name}"
    made = Host(namespace, f"10.231.{subnet}.1", f"10.231.{subnet}.2")
    ip("netns", "add", namespace)
    try:
        ip("link", "add", outside, "type", "veth", "peer", "name", inside)
        ip("link", "set", inside, "netns", namespace)
        ip("addr", "add", f"{made.gateway}/30", "dev", outside)
        ip("link", "set", outside, "up")
        for command in (["addr", "add", f"{made.address}/30", "dev", inside], ["link", "set", inside, "up"],
                        ["link", "set", "lo", "up"]):
            ip("netns", "exec", namespace, "ip", *command)
        yield made
    finally:
        subprocess.run(["ip", "link", "del", outside], capture_output=True, timeout=10)  # gone with the namespace too
        subprocess.run(["ip", "netns", "del", namespace], capture_output=True, timeout=10)


def _via(url: str, proxy: TcpProxy) -> str:
    parts = urlsplit(url)
    netloc = f"{parts.username}@" if parts.username else ""
    return urlunsplit(parts._replace(netloc=f"{netloc}{proxy.host}:{proxy.port}"))


async def _start(on: Host, env: dict[str, str], log: Path) -> asyncio.subprocess.Process:
    with log.open("ab") as output:  # noqa: ASYNC230 - a local file, once
        process = await asyncio.create_subprocess_exec(
            "ip", "netns", "exec", on.namespace, sys.executable, "-m", "app",
            env={**os.environ, **env, "HOST": on.address, "PORT": str(APP_PORT)}, stdout=output, stderr=output)
    async with aiohttp.ClientSession() as session, asyncio.timeout(30):
        while True:
            if process.returncode is not None:
                raise RuntimeError(f"the app on {on.address} exited; its log: {log}")
            try:
                async with session.get(f"http://{on.address}:{APP_PORT}/readyz") as ready:
                    if ready.status == 200:
                        return process
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)  # noqa: ASYNC110 - /readyz is the readiness signal


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.terminate()
        try:
            async with asyncio.timeout(20):
                await process.wait()
        except TimeoutError:
            process.kill()
            await process.wait()


@pytest.fixture
async def two_hosts(postgres_schema: PostgresSchema, redis_prefix: str, tmp_path: Path) -> AsyncIterator[
        tuple[Host, Host]]:
    _require_netns()
    redis_url = require_redis()
    tag, subnet = uuid.uuid4().hex[:6], random.randrange(0, 250)
    processes: list[asyncio.subprocess.Process] = []
    proxies: list[TcpProxy] = []
    try:
        with ExitStack() as stack:
            hosts = (stack.enter_context(host(f"{tag}a", subnet)), stack.enter_context(host(f"{tag}b", subnet + 1)))
            for on in hosts:
                database, redis = (TcpProxy(*_target(url, default), host=on.gateway)
                                   for url, default in ((postgres_schema.url, 5432), (redis_url, 6379)))
                for proxy in (database, redis):
                    await proxy.start()
                    proxies.append(proxy)
                env = {"DATABASE_URL": _via(postgres_schema.url, database), "REDIS_URL": _via(redis_url, redis),
                       "REDIS_PREFIX": redis_prefix, "JWT_SECRET": SECRET, "PUSH_INTERVAL": "0.05"}
                processes.append(await _start(on, env, tmp_path / f"{on.namespace}.log"))
            yield hosts
    finally:
        for process in processes:
            await _stop(process)
        for proxy in proxies:
            await proxy.stop()


def _target(url: str, default_port: int) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or default_port


async def test_an_increment_through_one_host_reaches_a_stream_on_the_other(two_hosts: tuple[Host, Host]) -> None:
    a, b = two_hosts
    url_a, url_b = f"http://{a.address}:{APP_PORT}", f"http://{b.address}:{APP_PORT}"
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{url_b}/stream") as stream:
            assert stream.status == 200
            reader = SSEReader(stream.content)
            assert (await reader.event(WAIT)).type == "snapshot"
            body = {"userId": "across-hosts", "actionId": uuid.uuid4().hex}
            async with session.post(f"{url_a}/scores/increment", json=body, headers=auth()) as response:
                assert response.status == 200, await response.text()
            update = await reader.event(WAIT)
            assert update.type == "update"
            assert [(e[1], e[3]) for e in update.entries()] == [("across-hosts", 10)]
        async with asyncio.timeout(WAIT):
            while True:  # host A's own top 10 follows its bus within the push interval
                async with session.get(f"{url_a}/top") as top_a:
                    if (await top_a.json())["version"] == update.id:
                        break
                await asyncio.sleep(0.05)  # noqa: ASYNC110 - polling the other host is the point
