-- submissions whose answers were loaded before the submission row itself: the only answers a
-- newly arriving submission can already have, so a load need not search the whole answers table
create table if not exists answers_without_submission (
    submission_id varchar not null
);
