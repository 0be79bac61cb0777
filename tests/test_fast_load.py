"""The increment body's fast path accepts exactly what the marshmallow schema accepts, with the same result."""
from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from marshmallow import ValidationError

from app.http.schemas import increment_body

SCHEMA = increment_body(("complete", "bonus"))
VALUES = st.one_of(st.none(), st.integers(), st.booleans(),
                   st.sampled_from(["complete", "bonus", "u1", "a b", "", "é"]),
                   st.text(max_size=70), st.text(alphabet="abc:@.-_", min_size=1, max_size=66))
BODIES = st.dictionaries(st.sampled_from(["userId", "actionId", "action", "delta", "score"]), VALUES, max_size=4)


@given(BODIES)
@settings(deadline=None)  # a loaded CI machine can take longer than the 200 ms default per example
def test_fast_load_agrees_with_the_schema(body: dict[str, Any]) -> None:
    fast = SCHEMA.fast_load(body)
    try:
        loaded = SCHEMA.load(body)
    except ValidationError:
        assert fast is None
        return
    assert fast is None or fast == loaded


def test_a_plain_body_takes_the_fast_path() -> None:
    assert SCHEMA.fast_load({"userId": "u1", "actionId": "a-1"}) == {"userId": "u1", "actionId": "a-1", "action": None}
