-- one row per committed load
create table if not exists load_runs (
    load_id bigint not null,
    mode varchar not null,
    started_at timestamptz not null,
    finished_at timestamptz not null,
    files_loaded bigint not null,
    files_rejected bigint not null
);
