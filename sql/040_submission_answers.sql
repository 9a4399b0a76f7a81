-- answers in long form, one row per answer (a list gives one row per item); replaced per submission
create table if not exists submission_answers (
    submission_id varchar not null,
    intake_bot_id varchar not null,
    field_name varchar not null,
    position integer not null,
    is_list boolean,
    value_kind varchar,
    text_value varchar,
    number_value double,
    boolean_value boolean,
    submission_updated_at timestamptz
);
