-- every answer with its value read as each type the wide views need; a value that does not fit
-- a type is null there (try_cast), never an error. a whole number reads as text without ".0".
create or replace view v_answer_values as
select
    submission_id,
    intake_bot_id,
    field_name,
    position,
    coalesce(
        text_value,
        case
            when number_value = trunc(number_value) and abs(number_value) < 1e15
                then cast(cast(number_value as bigint) as varchar)
            else cast(number_value as varchar)
        end,
        cast(boolean_value as varchar)
    ) as text,
    coalesce(number_value, try_cast(text_value as double)) as number,
    coalesce(boolean_value, try_cast(text_value as boolean)) as flag,
    coalesce(try_cast(text_value as date), cast(try_cast(text_value as timestamp) as date)) as day
from submission_answers;
