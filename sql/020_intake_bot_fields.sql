-- the schema items of each bot's newest version, in order; replaced per bot
create table if not exists intake_bot_fields (
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
    bot_updated_at timestamptz
);
