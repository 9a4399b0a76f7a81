-- completed submissions that are not tests, with their bot's name: what analytics should count
create or replace view v_completed_submissions as
select
    s.id,
    s.intake_bot_id,
    b.name as intake_bot_name,
    s.created_at,
    s.updated_at,
    s.ai_summary,
    s.file_count,
    s.message_count,
    s.schema_version,
    s.data
from submissions as s
left join intake_bots as b on b.id = s.intake_bot_id
where s.status = 'COMPLETED' and s.is_test is not true;
