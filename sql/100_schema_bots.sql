-- per-bot wide views live here: select * from bots.customer_onboarding
create schema if not exists bots;
