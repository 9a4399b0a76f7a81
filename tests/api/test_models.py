"""Record parsing: the fast path for documented list items agrees with the general one."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings, strategies as st

from iozen_etl.api.exchange import decode_json
from iozen_etl.api.parsing import (
    WireFormatError,
    listed_submission_parser,
    parse_submission_general,
)

JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
ANY_JSON = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=6,
)
STAMP = st.sampled_from(["2026-03-01T09:00:00.000Z", "2026-03-01T09:00:00Z", "", "yesterday"])


def documented_item(**overrides: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": "sub1",
        "data": {"full_name": "Ada", "topics": ["a", "b"], "n": 3},
        "status": "COMPLETED",
        "ai_summary": None,
        "is_test": False,
        "file_count": 0,
        "message_count": 4,
        "schema_version": 2,
        "created_at": "2026-03-01T09:00:00.000Z",
        "updated_at": "2026-03-01T09:05:00.000Z",
    }
    item.update(overrides)
    return item


def parse_both(raw: Any) -> tuple[object, object]:
    """(fast-path result, general-path result); an error counts as its type and message."""
    results: list[object] = []
    for parse in (
        listed_submission_parser("bot1"),
        lambda r: parse_submission_general(r, "bot1", False),
    ):
        try:
            results.append(parse(raw))
        except WireFormatError as exc:
            results.append((type(exc), str(exc)))
    return results[0], results[1]


@settings(max_examples=300, deadline=None)
@given(
    key=st.sampled_from(sorted(documented_item())),
    value=ANY_JSON,
    created=STAMP,
    extra=st.dictionaries(st.sampled_from(["intake_bot_id", "future_field"]), ANY_JSON, max_size=1),
    dropped=st.sets(st.sampled_from(sorted(documented_item())), max_size=2),
)
def test_the_fast_path_gives_what_the_general_path_gives(
    key: str, value: Any, created: str, extra: dict[str, Any], dropped: set[str]
) -> None:
    raw = {**documented_item(created_at=created), key: value, **extra}
    for gone in dropped:
        raw.pop(gone, None)
    fast, general = parse_both(raw)
    assert fast == general


def test_a_documented_item_is_read_whole() -> None:
    record = listed_submission_parser("bot1")(documented_item(ai_summary="Short."))
    assert (record.id, record.intake_bot_id, record.status, record.ai_summary) == (
        "sub1",
        "bot1",
        "COMPLETED",
        "Short.",
    )
    assert (record.is_test, record.file_count, record.message_count, record.schema_version) == (
        False,
        0,
        4,
        2,
    )
    assert record.data["topics"] == ["a", "b"] and dict(record.extra) == {}
    assert record.messages is None


@pytest.mark.parametrize("key", ["id", "created_at", "updated_at"])
def test_a_missing_required_key_names_the_key(key: str) -> None:
    with pytest.raises(WireFormatError, match=key):
        listed_submission_parser("bot1")(documented_item(**{key: None}))


@settings(max_examples=200, deadline=None)
@given(
    st.recursive(
        JSON_SCALARS | st.floats() | st.integers(min_value=-(10**40), max_value=10**40),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
        max_leaves=6,
    )
)
def test_the_body_decoder_reads_what_the_standard_library_reads(value: Any) -> None:
    # NaN, infinities, integers past 64 bits and lone surrogates included: what msgspec refuses
    # goes the standard library's way, so no answer reads differently.
    text = json.dumps({"success": True, "data": value}).encode()
    decoded = decode_json(text)
    assert json.dumps(decoded, sort_keys=True) == json.dumps(json.loads(text), sort_keys=True)


@pytest.mark.parametrize("body", [b"", b"{", b"not json", b"\xff\xfe", b'{"data": NaN'])
def test_the_body_decoder_refuses_what_is_not_json_with_a_value_error(body: bytes) -> None:
    with pytest.raises(ValueError):
        decode_json(body)
