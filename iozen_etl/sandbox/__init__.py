"""A faithful ioZen API v1 sandbox: seeded data, the world moving, faults, in-process or served.

In tests, talk to it in-process and let waiting move the sandbox's clock instead of sleeping::

    sandbox = Sandbox(SandboxConfig(seed=1, bots=5, submissions_per_bot=100))
    client = IozenClient(sandbox.api_key, "http://sandbox/api/v1",
                         transport=sandbox_transport(sandbox),
                         clock=sandbox.clock.monotonic, wall_clock=sandbox.clock.now,
                         sleep=sandbox.clock.advance)
    assert fetched == sandbox.truth_submissions(bot_id)

The clock stands still unless advanced (``SandboxConfig(real_time=True)`` follows wall time, as
``iozen-etl sandbox`` does). ``serve(sandbox)`` puts the same sandbox on 127.0.0.1.

Modules, from the request inwards:

- ``server`` (HTTP on loopback), ``transport`` (in-process httpx), ``app`` (``Sandbox``: WSGI
  and ``handle``, which routes a request through the rest);
- ``routes`` (the route table: method, pattern, name, scope, plan feature, handler),
  ``gate`` (key, archived workspace, rate limits, injected faults, scopes, plan features),
  ``endpoints`` (the nine handlers), ``idempotency`` (stored POST answers), ``paging``
  (cursors), ``wire`` (how records look under the config's variants), ``validation`` (POST
  bodies), ``protocol`` (requests, responses, envelopes);
- ``control`` (``WorldControl``: ground truth, world moves, keys; ``Sandbox`` extends it),
  ``admin`` (the same over ``/_sandbox/...``), ``webhooks`` (signing, the delivery queue);
- ``world`` (the world and its moves), ``state`` (bots, submissions, webhooks, keys),
  ``seeding`` and ``seed`` (the seeded data and its templates), ``config``, ``clock``,
  ``timefmt``.
"""

from __future__ import annotations

from iozen_etl.sandbox.app import Sandbox
from iozen_etl.sandbox.clock import SandboxClock
from iozen_etl.sandbox.config import FaultRule, FaultSpec, FaultSpecError, SandboxConfig
from iozen_etl.sandbox.protocol import Problem, SandboxRequest, SandboxResponse
from iozen_etl.sandbox.server import RunningServer, serve
from iozen_etl.sandbox.transport import sandbox_transport
from iozen_etl.sandbox.webhooks import signature, verify

__all__ = [
    "FaultRule",
    "FaultSpec",
    "FaultSpecError",
    "Problem",
    "RunningServer",
    "Sandbox",
    "SandboxClock",
    "SandboxConfig",
    "SandboxRequest",
    "SandboxResponse",
    "sandbox_transport",
    "serve",
    "signature",
    "verify",
]
