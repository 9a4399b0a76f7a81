"""A backfill of ``submissions`` partitions launched as the Dagster UI launches one.

It uses Dagster's test utilities for the backfill daemon (private modules), which is why the
dagster family is pinned to one release in pyproject.toml.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
from dagster._core.execution.backfill import BulkActionStatus
from dagster._core.remote_origin import InProcessCodeLocationOrigin
from dagster._core.test_utils import create_test_daemon_workspace_context
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget
from dagster._daemon.backfill import execute_backfill_iteration
from dagster_graphql.test.utils import execute_dagster_graphql

from iozen_etl.pipeline.partitions import BACKFILL_TAG

LAUNCH_BACKFILL = """
mutation($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message stack }
  }
}
"""


@dataclass(frozen=True)
class BackfillResult:
    status: str
    runs: int
    runs_succeeded: int


def run_ui_backfill(
    instance: dg.DagsterInstance,
    partition_keys: Sequence[str],
    *,
    asset: Sequence[str] = ("submissions",),
) -> BackfillResult:
    """Backfill partitions of ``asset`` (a path; a workspace's is ``(name, "submissions")``) as
    the UI does (GraphQL ``launchPartitionBackfill``), then run the backfill daemon's
    iterations until it is done."""
    origin = InProcessCodeLocationOrigin(
        LoadableTargetOrigin(executable_path=sys.executable, module_name="iozen_etl.definitions"),
        location_name="iozen",
    )
    with create_test_daemon_workspace_context(
        InProcessWorkspaceLoadTarget(origin), instance
    ) as workspace:
        result = execute_dagster_graphql(
            workspace.create_request_context(),
            LAUNCH_BACKFILL,
            {
                "params": {
                    "partitionNames": list(partition_keys),
                    "assetSelection": [{"path": list(asset)}],
                    "tags": [{"key": "iozen/requested_by", "value": "test"}],
                }
            },
        )
        launched = result.data["launchPartitionBackfill"]
        assert launched["__typename"] == "LaunchBackfillSuccess", launched
        backfill_id = launched["backfillId"]
        logger = logging.getLogger("ui-backfill")
        for _ in range(20):
            list(execute_backfill_iteration(workspace, logger))
            backfill = instance.get_backfill(backfill_id)
            assert backfill is not None
            if backfill.status != BulkActionStatus.REQUESTED:
                break
        assert backfill is not None
    runs = instance.get_runs(dg.RunsFilter(tags={BACKFILL_TAG: backfill_id}))
    return BackfillResult(
        backfill.status.value, len(runs), sum(1 for run in runs if run.is_success)
    )


def run_ui_backfill_in_child(
    home: Path, partition_keys: Sequence[str], asset: Sequence[str]
) -> BackfillResult:
    """``run_ui_backfill`` in a new Python process on the instance of ``home`` (its runs launched
    in that process), whose definitions load from the environment it inherits: a workspaces
    file set by the test, which a test process that imported the definitions before cannot
    see."""
    child = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.support.backfill",
            str(home),
            "/".join(asset),
            *partition_keys,
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert child.returncode == 0, child.stderr[-3000:]
    return BackfillResult(**json.loads(child.stdout.strip().splitlines()[-1]))


if __name__ == "__main__":
    from tests.support.postgres import with_in_process_launcher

    home_arg, asset_arg, *keys = sys.argv[1:]
    with with_in_process_launcher(Path(home_arg)) as child_instance:
        outcome = run_ui_backfill(child_instance, keys, asset=asset_arg.split("/"))
    print(json.dumps(dataclasses.asdict(outcome)))
