"""Sandbox-only routes under ``/_sandbox/``: the control surface over HTTP, with the usual
envelopes (a missing or bad field is a 400, an unknown action a 404).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from iozen_etl.sandbox.control import WorldControl
from iozen_etl.sandbox.protocol import (
    Problem,
    SandboxRequest,
    SandboxResponse,
    dumps,
    invalid,
    json_body,
    parse_query,
    problem_response,
)

# Each gets the control surface and the parsed query (GET) or JSON object body (POST).
Action = Callable[[WorldControl, Mapping[str, Any]], Any]


def _generate(control: WorldControl, body: Mapping[str, Any]) -> Any:
    ids = control.generate_submissions(
        body["bot_id"], int(body.get("n", 1)), body.get("status"), bool(body.get("is_test"))
    )
    return {"ids": ids}


def _update(control: WorldControl, body: Mapping[str, Any]) -> Any:
    control.update_submission(
        body["bot_id"], body["submission_id"], status=body.get("status"), data=body.get("data")
    )
    return {"updated": True}


def _pause(control: WorldControl, body: Mapping[str, Any]) -> Any:
    control.pause_bot(body["bot_id"], body.get("status", "PAUSED"))
    return {"paused": True}


def _add_field(control: WorldControl, body: Mapping[str, Any]) -> Any:
    control.add_field(body["bot_id"], body["field"])
    return {"added": True}


def _advance(control: WorldControl, body: Mapping[str, Any]) -> Any:
    control.clock.advance(float(body["seconds"]))
    return {"now": control.clock.now()}


ACTIONS: dict[tuple[str, str], Action] = {
    ("GET", "truth/bots"): lambda control, _: control.truth_bots(),
    ("GET", "truth/submissions"): lambda control, query: control.truth_submissions(
        query.get("bot_id") or None
    ),
    ("GET", "truth/webhooks"): lambda control, _: control.truth_webhooks(),
    ("GET", "requests"): lambda control, query: {
        "count": control.request_count(query.get("route") or None, query.get("method") or None)
    },
    ("GET", "deliveries"): lambda control, _: [r.__dict__ for r in control.deliveries()],
    ("GET", "clock"): lambda control, _: {"now": control.clock.now()},
    ("POST", "generate"): _generate,
    ("POST", "update"): _update,
    ("POST", "pause"): _pause,
    ("POST", "add-field"): _add_field,
    ("POST", "add-bot"): lambda control, body: {
        "id": control.add_bot(body.get("name", "New Bot"), body.get("fields"))
    },
    ("POST", "advance"): _advance,
    ("POST", "deliver"): lambda control, _: {"attempted": control.deliver_due()},
}


def admin_response(
    control: WorldControl, request: SandboxRequest, request_id: str
) -> SandboxResponse:
    """Answer one /_sandbox/ request."""
    try:
        data = _run(control, request)
    except Problem as problem:
        return problem_response(problem, request_id, [])
    except (ValueError, KeyError, TypeError) as error:
        return problem_response(invalid([], str(error), "invalid_request"), request_id, [])
    headers = (("Content-Type", "application/json"), ("X-Request-Id", request_id))
    return SandboxResponse(200, headers, dumps({"success": True, "data": data}))


def _run(control: WorldControl, request: SandboxRequest) -> Any:
    name = request.path[len("/_sandbox/") :].strip("/")
    arguments: Mapping[str, Any]
    if request.method == "GET":
        arguments = parse_query(request.query)
    elif request.method == "POST":
        arguments = _object_body(request.body)
    else:
        raise Problem(404, "resource_not_found", {"resource": "route"})
    action = ACTIONS.get((request.method, name))
    if action is None:
        raise Problem(404, "resource_not_found", {"resource": "route"})
    return action(control, arguments)


def _object_body(raw: bytes) -> dict[str, Any]:
    body = json_body(raw) if raw else {}
    if not isinstance(body, dict):
        raise invalid([], "Expected an object")
    return body
