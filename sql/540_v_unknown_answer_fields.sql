-- answer field names that the bot's current schema does not declare (they stay in submissions.data)
create or replace view v_unknown_answer_fields as
select a.intake_bot_id, a.field_name, count(distinct a.submission_id) as submissions
from submission_answers as a
where not exists (
    select 1
    from intake_bot_fields as f
    where f.intake_bot_id = a.intake_bot_id and f.name = a.field_name and f.is_content is not true
)
    and exists (select 1 from intake_bot_fields as f where f.intake_bot_id = a.intake_bot_id)
group by all;
