-- one row per intake bot, its newest version (merged by id, newest updated_at wins)
create table if not exists intake_bots (
    id varchar not null,
    name varchar,
    status varchar,
    description varchar,
    share_url varchar,
    submission_count bigint,
    created_at timestamptz,
    updated_at timestamptz,
    schema_shape varchar,
    extra varchar,
    synced_at timestamptz
);
