-- each parquet file loaded, by relative path; a replaced file (new size, mtime or inode) loads again
create table if not exists load_ledger (
    path varchar not null,
    table_name varchar not null,
    size_bytes bigint not null,
    mtime_ns bigint not null,
    inode bigint not null,
    row_count bigint not null,
    load_id bigint not null,
    loaded_at timestamptz not null
);
