"""A change's records are written out as text (``app/core/publishing.py``); their bytes must be
exactly what orjson gives for the same dicts, so consumers and digests see no difference.

Pure: any ids (quotes, backslashes, control characters, non-ASCII, the empty string), any time.
"""

from __future__ import annotations

import orjson
from hypothesis import given
from hypothesis import strategies as st

from app.core.membership import Change
from app.core.publishing import change_records
from tables.json_bytes import plain_text

ids = st.one_of(st.text(), st.text(alphabet='ab"\\\x00\x1f\x7f\u00e9\u2028 '), st.just(""))


@given(st.one_of(st.text(), ids))
def test_plain_text_is_what_orjson_leaves_as_it_is(text: str) -> None:
    if plain_text(text):
        assert orjson.dumps(text).decode() == f'"{text}"'


@given(ids, ids, st.sampled_from(["entered", "exited"]), st.integers(0, 2**53),
       ids, st.integers(0, 50))
def test_change_records_are_orjsons_bytes(segment: str, person: str, kind: str, at: int,
                                          cause: str, ordinal: int) -> None:
    change = Change(segment, person, kind, at, cause, ordinal)
    try:
        expected = orjson.dumps(change.record())
    except orjson.JSONEncodeError:
        return
    value, key, membership = change_records(change)
    assert value == expected
    assert orjson.loads(value) == change.record()
    assert key == f"{segment}:{person}".encode()
    if kind == "entered":
        assert membership == orjson.dumps({"segment_id": segment, "person_id": person,
                                           "since": at})
    else:
        assert membership is None
