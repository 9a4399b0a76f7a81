"""Asset checks on the published warehouse: the plain checks of ``warehouse.checks`` in Dagster."""

# No `from __future__ import annotations` here: Dagster reads the context and resource
# annotations at definition time and needs real types, not strings.
from collections.abc import Iterator
from datetime import UTC, datetime

import dagster as dg

from iozen_etl.pipeline.scope import ENVIRONMENT, Scope
from iozen_etl.pipeline.warehouse_process import run_in_child
from iozen_etl.resources import DataDirResource
from iozen_etl.settings import (
    DEFAULT_MAX_SYNC_AGE_MINUTES,
    MAX_SYNC_AGE_ENV,
    max_sync_age_from_env,
)
from iozen_etl.warehouse.checks import ERROR, check_published

CHECK_DESCRIPTIONS = {
    "ids_unique": "Each table holds each key once.",
    "submissions_have_bots": "No submission refers to a bot the warehouse does not hold.",
    "submission_count_parity": "Each bot holds as many submissions as the API's submission_count.",
    "schema_drift": "A changed field type is an error; a new field or unknown answer a warning.",
    "sync_freshness": (
        f"The last successful sync is recent: warns after ${MAX_SYNC_AGE_ENV} minutes (default "
        f"{DEFAULT_MAX_SYNC_AGE_MINUTES}), when the warehouse's freshness policy warns too (it "
        "fails after two hours)."
    ),
}


def build_warehouse_checks(scope: Scope) -> dg.AssetChecksDefinition:
    """The checks of one workspace's warehouse schema."""
    warehouse = scope.key("warehouse")

    @dg.multi_asset_check(
        name=scope.name("warehouse_checks"),
        specs=[
            dg.AssetCheckSpec(name, asset=warehouse, description=description)
            for name, description in CHECK_DESCRIPTIONS.items()
        ],
    )
    def warehouse_checks(data_dir: DataDirResource) -> Iterator[dg.AssetCheckResult]:
        """Run every warehouse check on the published snapshot, as analysts see it."""
        results = run_in_child(
            check_published,
            scope.paths(data_dir.paths),
            max_sync_age=max_sync_age_from_env(),
            now=datetime.now(UTC),
        )
        for result in results:
            yield dg.AssetCheckResult(
                asset_key=warehouse,
                check_name=result.name,
                passed=result.passed,
                severity=(
                    dg.AssetCheckSeverity.ERROR
                    if result.severity == ERROR
                    else dg.AssetCheckSeverity.WARN
                ),
                metadata={key: value for key, value in result.metadata.items()},  # type: ignore[misc]
            )

    return warehouse_checks


WAREHOUSE_CHECKS = [build_warehouse_checks(ENVIRONMENT)]
