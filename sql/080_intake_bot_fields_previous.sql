-- the schema items a bot had before a newer version replaced them, and in which load
-- (for the drift check)
create table if not exists intake_bot_fields_previous (
    intake_bot_id varchar not null,
    position integer not null,
    item_id varchar,
    kind varchar,
    is_content boolean,
    name varchar,
    label varchar,
    type varchar,
    required boolean,
    options varchar[],
    content_type varchar,
    extra varchar,
    bot_updated_at timestamptz,
    replaced_in_load bigint not null
);
