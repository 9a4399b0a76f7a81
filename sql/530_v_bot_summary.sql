-- one row per bot: last submission, counts by status, and parity with the api's submission_count
create or replace view v_bot_summary as
with counts as (
    select
        intake_bot_id,
        count(*) as submissions,
        count(*) filter (where status = 'COMPLETED') as completed,
        count(*) filter (where status = 'IN_PROGRESS') as in_progress,
        count(*) filter (where status not in ('COMPLETED', 'IN_PROGRESS') or status is null)
            as other_status,
        count(*) filter (where is_test is true) as test_submissions,
        min(created_at) as first_submission_at,
        max(created_at) as last_submission_at
    from submissions
    group by all
)
select
    b.id as intake_bot_id,
    b.name,
    b.status,
    b.submission_count as api_submission_count,
    coalesce(c.submissions, 0) as submissions,
    coalesce(c.submissions, 0) - b.submission_count as count_difference,
    coalesce(c.submissions, 0) = b.submission_count as count_matches_api,
    coalesce(c.completed, 0) as completed,
    coalesce(c.in_progress, 0) as in_progress,
    coalesce(c.other_status, 0) as other_status,
    coalesce(c.test_submissions, 0) as test_submissions,
    c.first_submission_at,
    c.last_submission_at,
    b.updated_at,
    b.synced_at
from intake_bots as b
left join counts as c on c.intake_bot_id = b.id;
