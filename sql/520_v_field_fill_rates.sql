-- for each field of each bot's current schema: how many non-test submissions answered it
create or replace view v_field_fill_rates as
with answered as (
    select a.intake_bot_id, a.field_name, count(distinct a.submission_id) as answered
    from submission_answers as a
    join submissions as s on s.id = a.submission_id
    where s.is_test is not true
        and a.value_kind <> 'null'
        and not (a.value_kind = 'string' and trim(a.text_value) = '')
    group by all
),
totals as (
    select intake_bot_id, count(*) as submissions
    from submissions
    where is_test is not true
    group by all
)
select
    f.intake_bot_id,
    b.name as intake_bot_name,
    f.position,
    f.name as field_name,
    f.label,
    f.type,
    f.required,
    coalesce(t.submissions, 0) as submissions,
    coalesce(a.answered, 0) as answered,
    case
        when coalesce(t.submissions, 0) = 0 then null
        else round(coalesce(a.answered, 0) / t.submissions, 4)
    end as fill_rate
from intake_bot_fields as f
left join intake_bots as b on b.id = f.intake_bot_id
left join totals as t on t.intake_bot_id = f.intake_bot_id
left join answered as a on a.intake_bot_id = f.intake_bot_id and a.field_name = f.name
where f.is_content is not true;
