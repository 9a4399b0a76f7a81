"""Serve a Sandbox over HTTP/1.1 on loopback, one thread per connection."""

from __future__ import annotations

import contextlib
import socket
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from iozen_etl.sandbox.app import Sandbox
from iozen_etl.sandbox.protocol import MAX_BODY_BYTES, SandboxRequest, dumps, new_request_id

_READ_CHUNK = 65_536
# What socketserver hands a server for one connection (a stream server: the socket).
_Connection = socket.socket | tuple[bytes, socket.socket]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: clients reuse connections
    # Headers and body go out in one buffered write with Nagle off; otherwise every answer
    # waits out the peer's delayed ACK (about 40 ms) and loopback crawls at ~25 pages/s.
    disable_nagle_algorithm = True
    wbufsize = -1
    server_version = "iozen-sandbox"
    sys_version = ""
    server: _SandboxServer

    def log_message(self, format: str, *args: object) -> None:
        pass  # a request log would print URLs with ids; the sandbox stays quiet

    def _answer(self) -> None:
        parts = urllib.parse.urlsplit(self.path)
        length_header = self.headers.get("Content-Length")
        try:
            length = int(length_header) if length_header else 0
        except ValueError:
            length = 0
        # Read at most one byte past the limit so the sandbox can refuse it; drain the rest so
        # the client is not cut off while it is still sending.
        body = self.rfile.read(min(length, MAX_BODY_BYTES + 1)) if length > 0 else b""
        remaining = length - len(body)
        while remaining > 0:
            chunk = self.rfile.read(min(remaining, _READ_CHUNK))
            if not chunk:
                break
            remaining -= len(chunk)
        if len(body) < min(length, MAX_BODY_BYTES + 1) or remaining > 0:
            # The client went away mid-body (killed, say): a real server never sees that request,
            # so it must neither be handled nor leave an idempotent answer behind.
            self.close_connection = True
            return
        headers = {name.lower(): value for name, value in self.headers.items()}
        answer = self.server.sandbox.handle(
            SandboxRequest(
                self.command, urllib.parse.unquote(parts.path), parts.query, headers, body
            )
        )
        if answer.drop:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.send_response(answer.status)
        for name, value in answer.headers:
            self.send_header(name, value)
        if answer.status != 204:
            self.send_header("Content-Length", str(len(answer.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(answer.body)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # http.server's own refusals (bad request line, unknown method, huge headers) would be
        # HTML pages; the sandbox answers every request with the documented envelope.
        error = "validation_failed" if code < 500 else "internal_error"
        if code == 501:
            code, error = 404, "resource_not_found"
        body = dumps(
            {"success": False, "error": {"code": error, "message": message or "", "details": {}}}
        )
        self.close_connection = True
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Request-Id", new_request_id())
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = _answer
    do_POST = _answer
    do_DELETE = _answer
    do_PUT = _answer
    do_PATCH = _answer
    do_HEAD = _answer
    do_OPTIONS = _answer


class _SandboxServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self._connections: set[_Connection] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: _Connection, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: _Connection) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def cut_connections(self) -> None:
        """Shut every open connection, as a process that stops does: without this a closed
        server goes on answering clients on their kept-alive connections (its handler threads
        outlive it), so a restart would not be one."""
        with self._connections_lock:
            open_now = list(self._connections)
        for connection in open_now:
            if isinstance(connection, socket.socket):
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that hangs up mid-request is not news; answers never carry tracebacks


class RunningServer:
    """A sandbox being served; ``base_url`` ends in /api/v1. Close it when done."""

    def __init__(self, sandbox: Sandbox, host: str, port: int, webhook_interval_s: float) -> None:
        self.sandbox = sandbox
        self._server = _SandboxServer((host, port), sandbox)
        address = self._server.server_address
        self.host, self.port = str(address[0]), int(address[1])
        shown_host = f"[{self.host}]" if ":" in self.host else self.host
        self.root_url = f"http://{shown_host}:{self.port}"
        self.base_url = self.root_url + "/api/v1"
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )
        self._deliverer = threading.Thread(
            target=self._deliver_loop, args=(webhook_interval_s,), daemon=True
        )
        self._thread.start()
        self._deliverer.start()

    def _deliver_loop(self, interval: float) -> None:
        while not self._stop.wait(interval):
            self.sandbox.deliver_due()

    def close(self) -> None:
        """Stop as a stopped process would: no more connections, the open ones cut."""
        self._stop.set()
        self._server.shutdown()
        self._server.cut_connections()
        self._server.server_close()
        self._thread.join()
        self._deliverer.join()

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def serve(
    sandbox: Sandbox, host: str = "127.0.0.1", port: int = 0, webhook_interval_s: float = 0.2
) -> RunningServer:
    """Start serving in background threads (port 0 picks a free one)."""
    return RunningServer(sandbox, host, port, webhook_interval_s)
