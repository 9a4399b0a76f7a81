"""An httpx transport that answers from a Sandbox in the same process: no port, no thread."""

from __future__ import annotations

import httpx

from iozen_etl.sandbox.app import Sandbox
from iozen_etl.sandbox.protocol import SandboxRequest


class SandboxTransport(httpx.BaseTransport):
    """Hands each request to ``Sandbox.handle``; a dropped answer raises as httpx would."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = request.read()
        headers = {
            name.decode("latin-1").lower(): value.decode("latin-1")
            for name, value in request.headers.raw
        }
        answer = self.sandbox.handle(
            SandboxRequest(
                request.method,
                request.url.path,
                request.url.query.decode("ascii", "replace"),
                headers,
                body,
            )
        )
        if answer.drop:
            raise httpx.RemoteProtocolError(
                "Server disconnected without sending a response.", request=request
            )
        return httpx.Response(
            answer.status, headers=list(answer.headers), content=answer.body, request=request
        )


def sandbox_transport(sandbox: Sandbox) -> httpx.BaseTransport:
    """In-process transport for ``httpx.Client(transport=..., base_url=.../api/v1)``."""
    return SandboxTransport(sandbox)
