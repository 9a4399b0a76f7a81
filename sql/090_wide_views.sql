-- the per-bot wide views the load generated, so it only recreates those whose definition changed
-- (each view's select is one string run through query(): see iozen_etl/warehouse/wide_views.py)
create table if not exists wide_views (
    view_name varchar not null,
    intake_bot_id varchar not null,
    definition varchar not null
);
