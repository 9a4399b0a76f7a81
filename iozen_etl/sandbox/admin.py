"""Sandbox-only routes under ``/_sandbox/``: move the world and read its ground truth.

GET  truth/bots, truth/submissions?bot_id=, truth/webhooks, requests?route=&method=,
     deliveries, clock
POST generate {bot_id, n, status?, is_test?}, update {bot_id, submission_id, status?, data?},
     pause {bot_id, status?}, add-field {bot_id, field}, add-bot {name?, fields?},
     advance {seconds}, deliver
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from iozen_etl.sandbox.protocol import (
    Problem,
    SandboxRequest,
    SandboxResponse,
    invalid,
    json_body,
    parse_query,
    problem_body,
)
from iozen_etl.sandbox.world import dumps

if TYPE_CHECKING:
    from iozen_etl.sandbox.app import Sandbox


def _error(problem: Problem, request_id: str) -> SandboxResponse:
    headers = (("Content-Type", "application/json"), ("X-Request-Id", request_id))
    return SandboxResponse(problem.status, headers, problem_body(problem))


def admin_response(sandbox: Sandbox, request: SandboxRequest, request_id: str) -> SandboxResponse:
    """Answer one /_sandbox/ request with the usual envelopes."""
    try:
        data = _dispatch(sandbox, request)
        status, body = 200, dumps({"success": True, "data": data})
    except Problem as problem:
        return _error(problem, request_id)
    except (ValueError, KeyError, TypeError) as error:
        bad_request = invalid([], str(error), "invalid_request")
        return _error(bad_request, request_id)
    headers = (("Content-Type", "application/json"), ("X-Request-Id", request_id))
    return SandboxResponse(status, headers, body)


def _dispatch(sandbox: Sandbox, request: SandboxRequest) -> Any:
    action = request.path[len("/_sandbox/") :].strip("/")
    query = parse_query(request.query)
    if request.method == "GET":
        if action == "truth/bots":
            return sandbox.truth_bots()
        if action == "truth/submissions":
            return sandbox.truth_submissions(query.get("bot_id") or None)
        if action == "truth/webhooks":
            return sandbox.truth_webhooks()
        if action == "requests":
            count = sandbox.request_count(query.get("route") or None, query.get("method") or None)
            return {"count": count}
        if action == "deliveries":
            return [record.__dict__ for record in sandbox.deliveries()]
        if action == "clock":
            return {"now": sandbox.clock.now()}
        raise Problem(404, "resource_not_found", {"resource": "route"})
    if request.method != "POST":
        raise Problem(404, "resource_not_found", {"resource": "route"})
    body = json_body(request.body) if request.body else {}
    if not isinstance(body, dict):
        raise invalid([], "Expected an object")
    if action == "generate":
        ids = sandbox.generate_submissions(
            body["bot_id"], int(body.get("n", 1)), body.get("status"), bool(body.get("is_test"))
        )
        return {"ids": ids}
    if action == "update":
        sandbox.update_submission(
            body["bot_id"],
            body["submission_id"],
            status=body.get("status"),
            data=body.get("data"),
        )
        return {"updated": True}
    if action == "pause":
        sandbox.pause_bot(body["bot_id"], body.get("status", "PAUSED"))
        return {"paused": True}
    if action == "add-field":
        sandbox.add_field(body["bot_id"], body["field"])
        return {"added": True}
    if action == "add-bot":
        return {"id": sandbox.add_bot(body.get("name", "New Bot"), body.get("fields"))}
    if action == "advance":
        sandbox.clock.advance(float(body["seconds"]))
        return {"now": sandbox.clock.now()}
    if action == "deliver":
        return {"attempted": sandbox.deliver_due()}
    raise Problem(404, "resource_not_found", {"resource": "route"})
