"""Requests of any shape get an envelope: never a crash, never an internal error."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings, strategies as st

from iozen_etl.sandbox import Sandbox, SandboxConfig, SandboxRequest

SANDBOX = Sandbox(SandboxConfig(bots=2, submissions_per_bot=5, rate_limit=10**9))
BOT = SANDBOX.bot_ids()[0]
segments = st.one_of(
    st.sampled_from(["api", "v1", "intake-bots", "submissions", "webhooks", BOT, "", ".."]),
    st.text(max_size=12),
)
paths = st.lists(segments, max_size=6).map(lambda parts: "/" + "/".join(parts))
prefixed = st.lists(segments, max_size=4).map(lambda parts: "/api/v1/" + "/".join(parts))
bodies = st.one_of(
    st.binary(max_size=64),
    st.recursive(
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False)
        | st.text(max_size=8),
        lambda inner: (
            st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
        ),
        max_leaves=8,
    ).map(lambda value: json.dumps({"data": value} if isinstance(value, dict) else value).encode()),
)


@settings(
    max_examples=100, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(
    method=st.sampled_from(["GET", "POST", "DELETE", "PUT", "PATCH", "HEAD", "OPTIONS"]),
    path=st.one_of(paths, prefixed),
    query=st.text(max_size=30),
    body=bodies,
    idempotency_key=st.one_of(st.none(), st.text(max_size=10)),
    auth=st.sampled_from(["good", "bad", "none"]),
)
def test_any_request_gets_an_envelope(
    method: str, path: str, query: str, body: bytes, idempotency_key: str | None, auth: str
) -> None:
    headers = {}
    if auth != "none":
        key = SANDBOX.api_key if auth == "good" else "iozen_live_nope"
        headers["authorization"] = f"Bearer {key}"
    if idempotency_key is not None:
        headers["idempotency-key"] = idempotency_key
    response = SANDBOX.handle(SandboxRequest(method, path, query, headers, body))
    assert response.status != 500
    assert response.header("X-Request-Id")
    if response.status == 204:
        return
    envelope = json.loads(response.body)
    assert envelope["success"] is (response.status < 400)
    if not envelope["success"]:
        assert set(envelope["error"]) == {"code", "message", "details"}
