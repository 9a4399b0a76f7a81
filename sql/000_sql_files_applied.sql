-- which version (sha-256) of each sql/ file the warehouse has applied: unchanged files are skipped
create table if not exists sql_files_applied (
    file_name varchar not null,
    sha256 varchar not null
);
