-- registered webhook endpoints (the api never lists the secret)
create table if not exists webhooks (
    id varchar not null,
    url varchar,
    events varchar[],
    status varchar,
    description varchar,
    last_delivery_at timestamptz,
    last_delivery_ok boolean,
    consecutive_fails bigint,
    created_at timestamptz,
    updated_at timestamptz,
    extra varchar,
    synced_at timestamptz
);
