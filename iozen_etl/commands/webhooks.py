"""``iozen-etl webhooks list | create URL --events ... | delete ID | serve``: manage the
workspace's webhook endpoints over the API, and run the receiver that keeps their events.

The signing secret ioZen returns when an endpoint is created is shown once: written to a file
readable by its owner only (``--secret-file``), or printed once for the user to put in
``IOZEN_WEBHOOK_SECRET`` where the receiver runs. Nothing else keeps it.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from iozen_etl.api import IozenClient, IozenError
from iozen_etl.api.models import Webhook
from iozen_etl.commands.workspace_option import add_workspace_option, chosen_workspace
from iozen_etl.settings import (
    DEFAULT_RECEIVER_HOST,
    DEFAULT_RECEIVER_PORT,
    WEBHOOK_SECRET_ENV,
    DataPaths,
)
from iozen_etl.workspaces import WorkspacesFileError

SUBMISSION_EVENTS = ("submission.completed", "submission.updated")


def configure(parser: argparse.ArgumentParser) -> None:
    add_workspace_option(parser)
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    actions.add_parser("list", help="the workspace's endpoints (never their secrets)")
    create = actions.add_parser(
        "create", help="register an endpoint; its secret is shown once, or written to a file"
    )
    create.add_argument("url", help="where ioZen delivers events: an https URL")
    create.add_argument(
        "--events",
        default=",".join(SUBMISSION_EVENTS),
        help=f"comma-separated event types (default: {','.join(SUBMISSION_EVENTS)})",
    )
    create.add_argument("--description", help="a note shown beside the endpoint in ioZen")
    create.add_argument(
        "--secret-file",
        type=Path,
        help="write the signing secret to this new file, readable by you only, instead of "
        f"printing it (the receiver reads it with --secret-file, or from {WEBHOOK_SECRET_ENV})",
    )
    delete = actions.add_parser("delete", help="remove an endpoint")
    delete.add_argument("id", help="the endpoint's id (see `iozen-etl webhooks list`)")
    serve = actions.add_parser(
        "serve", help="receive signed events and keep them for the pipeline to act on"
    )
    serve.add_argument("--host", default=DEFAULT_RECEIVER_HOST, help="bind address")
    serve.add_argument("--port", type=int, default=DEFAULT_RECEIVER_PORT, help="port")
    serve.add_argument(
        "--secret-file",
        type=Path,
        help=f"the endpoint's signing secret, read from this file (else {WEBHOOK_SECRET_ENV})",
    )
    parser.epilog = (
        "Exits 0 when done; 1 when the API refused (its message names the request id); 2 when "
        "the command line or the environment is wrong."
    )


def run(args: argparse.Namespace) -> int:
    try:
        workspace = chosen_workspace(args)
    except WorkspacesFileError as error:
        _say(str(error))
        return 2
    if args.action == "serve":
        return _serve(args, workspace.paths(DataPaths.from_env()))
    api_key = workspace.api_key()
    if not api_key:
        _say(f"{workspace.api_key_env} is not set: export the ioZen API key (it is never printed)")
        return 2
    try:
        with IozenClient(api_key, workspace.api_base_url()) as client:
            if args.action == "list":
                _list(client)
            elif args.action == "create":
                return _create(client, args)
            else:
                client.delete_webhook(args.id)
                print(f"deleted {args.id}")
    except IozenError as error:
        _say(str(error))
        return 1
    return 0


def _list(client: IozenClient) -> None:
    hooks = [hook for page in client.iter_webhook_pages() for hook in page.items]
    if not hooks:
        print("no webhook endpoints")
    for hook in hooks:
        last = "never delivered" if hook.last_delivery_at is None else hook.last_delivery_at
        print(f"{hook.id}  {hook.status}  {hook.url}  {','.join(hook.events)}  ({last})")


def _create(client: IozenClient, args: argparse.Namespace) -> int:
    events = [event.strip() for event in args.events.split(",") if event.strip()]
    if args.secret_file is not None and args.secret_file.exists():
        _say(f"{args.secret_file} exists: the secret goes only into a new file")
        return 2
    hook = client.create_webhook(args.url, events, args.description)
    print(f"created {hook.id}: {hook.url} for {','.join(hook.events)}")
    return _keep_secret(hook, args.secret_file)


def _keep_secret(hook: Webhook, secret_file: Path | None) -> int:
    if not hook.secret:
        _say("ioZen returned no signing secret; delete the endpoint and create it again")
        return 1
    if secret_file is None:
        print(
            f"signing secret (shown once; set {WEBHOOK_SECRET_ENV} to it where the receiver runs):"
        )
        print(hook.secret)
        return 0
    try:
        descriptor = os.open(secret_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as error:
        _say(f"{secret_file}: {error.strerror}; the secret was not kept, so delete {hook.id}")
        return 1
    with os.fdopen(descriptor, "w") as handle:
        handle.write(hook.secret + "\n")
    print(f"signing secret written to {secret_file} (readable by you only)")
    return 0


def _read_secret(secret_file: Path | None) -> str:
    """The endpoint's secret from ``secret_file``, else the environment; "" when neither."""
    if secret_file is not None:
        return secret_file.read_text().strip()
    return os.environ.get(WEBHOOK_SECRET_ENV, "").strip()


def _serve(args: argparse.Namespace, paths: DataPaths) -> int:
    import uvicorn

    from iozen_etl.receiver import EventStore
    from iozen_etl.receiver.app import create_app

    try:
        secret = _read_secret(args.secret_file)
    except OSError as error:
        _say(f"{args.secret_file}: {error.strerror}")
        return 2
    if not secret:
        _say(f"no secret: set {WEBHOOK_SECRET_ENV} or pass --secret-file")
        return 2
    with EventStore(paths.webhook_events) as store:
        print(f"receiving on http://{args.host}:{args.port}/ into {paths.webhook_events}")
        uvicorn.run(create_app(secret, store), host=args.host, port=args.port, log_level="warning")
    return 0


def _say(message: str) -> None:
    print(f"iozen-etl webhooks: {message}", file=sys.stderr)
