-- submissions per bot per utc day of creation, split by status; tests counted apart
create or replace view v_submissions_per_bot_day as
select
    s.intake_bot_id,
    b.name as intake_bot_name,
    cast(timezone('UTC', s.created_at) as date) as day,
    count(*) filter (where s.is_test is not true) as submissions,
    count(*) filter (where s.is_test is not true and s.status = 'COMPLETED') as completed,
    count(*) filter (where s.is_test is not true and s.status = 'IN_PROGRESS') as in_progress,
    count(*) filter (where s.is_test is true) as test_submissions
from submissions as s
left join intake_bots as b on b.id = s.intake_bot_id
group by all;
