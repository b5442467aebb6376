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


#: Ids as they mostly come (customer ids, segment ids, ULIDs, causes): the records' fast path.
plain_ids = st.from_regex(r"[A-Za-z0-9_.:@+\-]{0,40}", fullmatch=True)


@given(ids)
def test_plain_text_is_what_orjson_leaves_as_it_is(text: str) -> None:
    if plain_text(text):
        assert orjson.dumps(text).decode() == f'"{text}"'


@given(plain_ids)
def test_ids_as_they_mostly_come_are_plain_text(text: str) -> None:
    # (Else every record would take the slower path through orjson, and the tests above
    # would still pass.)
    assert plain_text(text)


any_ids = st.one_of(ids, plain_ids)


@given(any_ids, any_ids, st.sampled_from(["entered", "exited"]), st.integers(0, 2**53), any_ids,
       st.integers(0, 50))
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
