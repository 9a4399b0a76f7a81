-- the submissions whose row or answers the latest load inserted or changed (for the drift check)
create table if not exists load_changed_submissions (
    submission_id varchar not null
);
