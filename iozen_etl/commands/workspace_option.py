"""``--workspace NAME``: which workspace of a workspaces file a command acts on."""

from __future__ import annotations

import argparse

from iozen_etl.workspaces import Workspace, choose_workspace, load_workspaces


def add_workspace_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--workspace",
        metavar="NAME",
        help="with IOZEN_WORKSPACES_FILE: the workspace to act on (its key, API and files); "
        "needed when the file names several",
    )


def chosen_workspace(args: argparse.Namespace) -> Workspace:
    """The workspace ``--workspace`` names, or the only one (raises ``WorkspacesFileError``)."""
    return choose_workspace(args.workspace, load_workspaces())
