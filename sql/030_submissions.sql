-- one row per submission, its newest version; data holds the whole answers object as json
create table if not exists submissions (
    id varchar not null,
    intake_bot_id varchar not null,
    status varchar,
    is_test boolean,
    ai_summary varchar,
    file_count bigint,
    message_count bigint,
    schema_version bigint,
    created_at timestamptz,
    updated_at timestamptz,
    data varchar,
    extra varchar,
    synced_at timestamptz
);

-- what each column holds: shown by DuckDB (duckdb_columns().comment) and as the warehouse
-- asset's column schema in the Dagster UI
comment on column submissions.id is 'the submission id (key)';
comment on column submissions.intake_bot_id is 'the bot it was submitted to (intake_bots.id)';
comment on column submissions.status is 'IN_PROGRESS or COMPLETED (any string the API sends)';
comment on column submissions.is_test is 'a test submission made from the bot editor';
comment on column submissions.ai_summary is 'the AI summary ioZen wrote, when completed';
comment on column submissions.file_count is 'files uploaded with it';
comment on column submissions.message_count is 'conversation messages';
comment on column submissions.schema_version is 'the bot schema version it was answered under';
comment on column submissions.created_at is 'when it was started (UTC)';
comment on column submissions.updated_at is 'its last change (UTC); the newest version is kept';
comment on column submissions.data is 'every answer as one JSON object (field name: value)';
comment on column submissions.extra is 'fields the API sent that this version does not know (JSON)';
comment on column submissions.synced_at is 'when iozen-etl read this version (UTC)';
