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
