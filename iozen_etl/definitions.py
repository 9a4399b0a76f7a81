"""The one ``Definitions`` of iozen-etl: assets in flow order, checks, jobs, schedules, sensors.

Resources come from the environment when a run starts: ``IOZEN_API_KEY`` through ``EnvVar``
(never shown in the UI), ``IOZEN_BASE_URL``, ``IOZEN_IN_PROGRESS_REFRESH_LIMIT`` and
``IOZEN_DATA_DIR``; the schedules' crons when the definitions load.
"""

from __future__ import annotations

import dagster as dg

from iozen_etl.pipeline.assets import (
    intake_bots,
    submission_events,
    submissions,
    warehouse,
    webhooks,
)
from iozen_etl.pipeline.automation import (
    events_job,
    inbox_sensor,
    incremental_sync_schedule,
    load_job,
    new_bots_sensor,
    nightly_reconcile_schedule,
    replay_job,
    sync_job,
    warehouse_sensor,
    webhook_events_sensor,
)
from iozen_etl.pipeline.checks import WAREHOUSE_CHECKS
from iozen_etl.pipeline.replay_assets import submission_replay
from iozen_etl.resources import DataDirResource, IozenApiResource
from iozen_etl.settings import API_KEY_ENV

defs = dg.Definitions(
    assets=[intake_bots, webhooks, submissions, submission_events, warehouse, submission_replay],
    asset_checks=WAREHOUSE_CHECKS,
    jobs=[sync_job, load_job, events_job, replay_job],
    schedules=[incremental_sync_schedule, nightly_reconcile_schedule],
    sensors=[new_bots_sensor, warehouse_sensor, webhook_events_sensor, inbox_sensor],
    # One process per run: the sync spreads its own work over threads (sharing one rate budget),
    # and runs are serialised by the pool anyway, so a process per step would only add start-up.
    executor=dg.in_process_executor,
    resources={
        # The ioZen API: one client per step, sharing the key's rate budget inside the process.
        # IOZEN_BASE_URL and IOZEN_IN_PROGRESS_REFRESH_LIMIT are read when a run starts.
        "iozen_api": IozenApiResource(api_key=dg.EnvVar(API_KEY_ENV)),
        # The lake, the state file and the warehouse, under IOZEN_DATA_DIR read at run time.
        "data_dir": DataDirResource(),
    },
)
