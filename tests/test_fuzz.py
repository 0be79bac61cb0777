"""Hypothesis against the real app on SQLite: no body, header or path id gets a 500.

The distinct inputs tried, those refused with a 4xx and the 500s seen are written to
.pytest_cache/fuzz-summary.json and shown at the end of the module's run.
"""
from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp.test_utils import TestClient
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from app.auth.keyring import parse_jwks
from app.config import Settings
from tests.conftest import SECRET, token

Client = TestClient[Any, Any]
JSON = {"Content-Type": "application/json"}
FIELDS = ["userId", "actionId", "action", "displayName", "delta", "score", "points", "__proto__"]
FUZZ = settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@dataclass
class Tally:
    tried: set[str] = field(default_factory=set)
    refused: set[str] = field(default_factory=set)  # answered 4xx: the bad inputs
    server_errors: int = 0
    seconds: float = 0.0


TALLY = Tally()



def wide_text(max_size: int) -> st.SearchStrategy[str]:
    """Any text, lone surrogates included (JSON can carry them as \\udxxx escapes)."""
    return st.lists(st.characters() | st.characters(categories=["Cs"]), max_size=max_size).map("".join)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | wide_text(40),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(wide_text(10), children, max_size=4),
    max_leaves=10,
)
objects = st.dictionaries(st.sampled_from(FIELDS) | wide_text(12), json_values, max_size=5)
near_valid = st.fixed_dictionaries(
    {"userId": st.from_regex(r"[A-Za-z0-9_.:@-]{1,64}", fullmatch=True) | wide_text(70),
     "actionId": st.from_regex(r"[\x20-\x7e]{1,128}", fullmatch=True) | wide_text(130)},
    optional={"action": st.sampled_from(["complete", "win", ""]) | wide_text(5), "delta": json_values},
)
near_valid_user = st.fixed_dictionaries({"displayName": wide_text(40)}, optional={"userId": json_values})
json_bodies = st.one_of(json_values, objects, near_valid, near_valid_user).map(lambda value: json.dumps(value).encode())
bodies = json_bodies | st.binary(max_size=300)
header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=80)
# Half the inputs carry a valid token and a JSON content type, so they reach the schemas and the store.
valid_auth = st.builds(lambda scope, sub: f"Bearer {token(scope, sub)}",
                       st.sampled_from(["scores:write users:write users:delete audit:read", "users:write", ""]),
                       st.sampled_from(["game-1", "", " "]) | wide_text(20))
bad_auth = st.one_of(
    st.just(None), header_text, st.sampled_from(["Bearer", "Bearer ", "bearer x.y.z"]),
    st.builds(lambda cut, junk: f"Bearer {token()[:cut]}{junk}", st.integers(0, 200), header_text),
)
authorizations = valid_auth | bad_auth
content_types = st.sampled_from(["application/json", "application/json; charset=utf-8"]) | st.one_of(
    st.sampled_from(["application/json; charset=utf-16", "text/plain", "application/JSON"]), header_text)
headers = st.fixed_dictionaries({"Content-Type": content_types}, optional={
    "Origin": st.sampled_from(["https://app.example", "null"]) | header_text,
    "If-None-Match": header_text,
    "Last-Event-ID": header_text,
})
# Percent-encoded text, and raw bytes that are not UTF-8 at all.
path_ids = st.from_regex(r"[A-Za-z0-9_.:@-]{1,64}", fullmatch=True) | st.one_of(st.text(max_size=80), st.binary(
    max_size=80)).map(lambda raw: quote(raw, safe=""))
queries = st.dictionaries(st.sampled_from(["cursor", "limit", "around"]), st.text(max_size=30), max_size=3)


@pytest.fixture(scope="module", autouse=True)
def fuzz_summary(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    summary = {"distinct_inputs": len(TALLY.tried), "distinct_bad_inputs": len(TALLY.refused),
               "status_500": TALLY.server_errors, "seconds": round(TALLY.seconds, 1)}
    path = Path(request.config.rootpath) / ".pytest_cache" / "fuzz-summary.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(summary) + "\n")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if capture is not None and reporter is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line(f"\nfuzz summary: {summary}")


@pytest.fixture
async def fuzzed(make_client: Any, tmp_path: Path) -> Client:
    client: Client = await make_client(Settings(
        jwt_secret=SECRET, database_url=f"sqlite:///{tmp_path}/fuzz.db", rate_limit_user="100000/minute",
        rate_limit_caller="100000/minute", anomaly_points_per_hour=10**6, anomaly_block=True,
        cors_origins=("https://app.example",),
    ))
    return client


async def _send(client: Client, method: str, path: str, auth: str | None, extra: dict[str, str],
                body: bytes | None = None) -> None:
    sent = {**extra, **({"Authorization": auth} if auth is not None else {})}
    started = time.monotonic()
    response = await client.request(method, path, data=body, headers=sent)
    text = await response.text()
    TALLY.seconds += time.monotonic() - started
    key = repr((method, path, sorted(sent.items()), body))
    TALLY.tried.add(key)
    if 400 <= response.status < 500:
        TALLY.refused.add(key)
    if response.status >= 500:
        TALLY.server_errors += 1
    assert response.status < 500, (method, path, sent, body, text)
    if response.status >= 400 and response.status != 405:
        assert json.loads(text)["error"]["code"], text


@FUZZ
@given(body=bodies, auth=authorizations, extra=headers)
@example(body=b"[" * 2000 + b"]" * 2000, auth=f"Bearer {token()}", extra=JSON)  # deeper than json's recursion
@example(body=b'{"userId": "u", "actionId": "a"}', auth=f"Bearer {token(sub=chr(0xD800))}", extra=JSON)
async def test_increment_never_fails_with_500(fuzzed: Client, body: bytes, auth: str | None,
                                              extra: dict[str, str]) -> None:
    await _send(fuzzed, "POST", "/scores/increment", auth, extra, body)


@FUZZ
@given(user_id=path_ids, body=near_valid_user.map(lambda value: json.dumps(value).encode()) | bodies,
       auth=authorizations, extra=headers)
@example(user_id="u", body=b'{"displayName": "\\ud800"}', auth=f"Bearer {token()}", extra=JSON)
async def test_put_user_never_fails_with_500(fuzzed: Client, user_id: str, body: bytes, auth: str | None,
                                             extra: dict[str, str]) -> None:
    await _send(fuzzed, "PUT", f"/users/{user_id}", auth, extra, body)


@FUZZ
@given(route=st.sampled_from([("DELETE", "/users/{}"), ("DELETE", "/users/{}/flag"), ("GET", "/users/{}/events"),
                              ("GET", "/scores/{}"), ("OPTIONS", "/users/{}")]),
       user_id=path_ids, query=queries, auth=authorizations, extra=headers)
async def test_user_paths_never_fail_with_500(fuzzed: Client, route: tuple[str, str], user_id: str,
                                              query: dict[str, str], auth: str | None, extra: dict[str, str]) -> None:
    method, template = route
    path = template.format(user_id) + ("?" + "&".join(f"{k}={quote(v)}" for k, v in query.items()) if query else "")
    await _send(fuzzed, method, path, auth, {**extra, "Access-Control-Request-Method": "DELETE"})


@settings(max_examples=300, deadline=None)
@given(document=json_values | st.fixed_dictionaries({"keys": st.lists(objects | json_values, max_size=3)}))
def test_a_jwks_document_is_keys_or_value_error(document: Any) -> None:
    # What a JWKS URL returns is untrusted: anything but keys must be a ValueError, never a crash.
    try:
        keys = parse_jwks(document)
    except ValueError as exc:
        assert str(exc)  # a reason the operator can act on
        return
    # Random documents rarely hold a real public key; when one does, every key is a signing key by kid.
    assert keys and all(isinstance(kid, str) and kid for kid in keys)


board_bodies = st.fixed_dictionaries({}, optional={
    "title": json_values, "actions": json_values | st.lists(st.sampled_from(["complete", "nope"]) | wide_text(8)),
    "periods": json_values | st.lists(st.sampled_from(["all", "daily", "weekly", "monthly", "yearly"])),
    "timeZone": st.sampled_from(["UTC", "Europe/Paris", "localtime", "../etc", "Etc/GMT+5"]) | wide_text(20),
}).map(lambda value: json.dumps(value).encode())
board_queries = st.dictionaries(st.sampled_from(["period", "at", "limit", "around"]), st.sampled_from(
    ["all", "daily", "weekly", "2026-11-23", "9999-12-31", "0001-01-01", "2026-02-30"]) | st.text(max_size=20),
                                max_size=4)


@FUZZ
@given(board_id=st.sampled_from(["main", "b"]) | path_ids, body=board_bodies | bodies, extra=headers,
       auth=st.just(f"Bearer {token('boards:write')}") | authorizations)
async def test_put_board_never_fails_with_500(fuzzed: Client, board_id: str, body: bytes, auth: str | None,
                                              extra: dict[str, str]) -> None:
    await _send(fuzzed, "PUT", f"/boards/{board_id}", auth, extra, body)


@FUZZ
@given(route=st.sampled_from(["/boards/{}/top", "/boards/{}/scores/u1", "/boards/main/scores/{}"]),
       board_id=st.sampled_from(["main", "b"]) | path_ids, query=board_queries)
async def test_board_reads_never_fail_with_500(fuzzed: Client, route: str, board_id: str,
                                               query: dict[str, str]) -> None:
    path = route.format(board_id) + ("?" + "&".join(f"{k}={quote(v)}" for k, v in query.items()) if query else "")
    await _send(fuzzed, "GET", path, None, {})
