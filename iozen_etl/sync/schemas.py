"""The Arrow schemas of the Parquet lake: declared once, used by normalisation and the warehouse.

Every table keeps a ``*_updated_at`` column so that the warehouse can merge newest-wins, and the
raw ``data`` / ``extra`` JSON so that nothing the API sends is ever dropped.
"""

from __future__ import annotations

import pyarrow as pa

TIMESTAMP = pa.timestamp("ms", tz="UTC")

INTAKE_BOTS = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("name", pa.string()),
        pa.field("status", pa.string()),
        pa.field("description", pa.string()),
        pa.field("share_url", pa.string()),
        pa.field("submission_count", pa.int64()),
        pa.field("created_at", TIMESTAMP),
        pa.field("updated_at", TIMESTAMP),
        # "fields" (schema.fields with kinds) or "legacy" (a bare list); null when only the
        # listing was read and the detail was not fetched.
        pa.field("schema_shape", pa.string()),
        pa.field("extra", pa.string()),  # unknown response fields, as a JSON object
        pa.field("synced_at", TIMESTAMP),
    ]
)

INTAKE_BOT_FIELDS = pa.schema(
    [
        pa.field("intake_bot_id", pa.string(), nullable=False),
        pa.field("position", pa.int32(), nullable=False),  # order in the bot's schema
        pa.field("item_id", pa.string()),
        pa.field("kind", pa.string()),  # "field" or "content"
        pa.field("is_content", pa.bool_()),
        pa.field("name", pa.string()),
        pa.field("label", pa.string()),
        pa.field("type", pa.string()),  # the API's type string, kept as sent
        pa.field("required", pa.bool_()),
        pa.field("options", pa.list_(pa.string())),
        pa.field("content_type", pa.string()),
        pa.field("extra", pa.string()),
        pa.field("bot_updated_at", TIMESTAMP),  # the bot version this schema belongs to
    ]
)

SUBMISSIONS = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("intake_bot_id", pa.string(), nullable=False),
        pa.field("status", pa.string()),
        pa.field("is_test", pa.bool_()),
        pa.field("ai_summary", pa.string()),
        pa.field("file_count", pa.int64()),
        pa.field("message_count", pa.int64()),
        pa.field("schema_version", pa.int64()),
        pa.field("created_at", TIMESTAMP),
        pa.field("updated_at", TIMESTAMP),
        pa.field("data", pa.string()),  # the whole answers object, as JSON
        pa.field("extra", pa.string()),
        pa.field("synced_at", TIMESTAMP),
    ]
)

# One row per answer; a multi-select gives one row per item (position 0, 1, ...).
# value_kind: "string", "number", "boolean", "null", or "json" (an object or a nested list).
SUBMISSION_ANSWERS = pa.schema(
    [
        pa.field("submission_id", pa.string(), nullable=False),
        pa.field("intake_bot_id", pa.string(), nullable=False),
        pa.field("field_name", pa.string(), nullable=False),
        pa.field("position", pa.int32(), nullable=False),
        pa.field("is_list", pa.bool_()),
        pa.field("value_kind", pa.string()),
        pa.field("text_value", pa.string()),
        pa.field("number_value", pa.float64()),
        pa.field("boolean_value", pa.bool_()),
        pa.field("submission_updated_at", TIMESTAMP),
    ]
)

WEBHOOKS = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("url", pa.string()),
        pa.field("events", pa.list_(pa.string())),
        pa.field("status", pa.string()),
        pa.field("description", pa.string()),
        pa.field("last_delivery_at", TIMESTAMP),
        pa.field("last_delivery_ok", pa.bool_()),
        pa.field("consecutive_fails", pa.int64()),
        pa.field("created_at", TIMESTAMP),
        pa.field("updated_at", TIMESTAMP),
        pa.field("extra", pa.string()),
        pa.field("synced_at", TIMESTAMP),
    ]
)

# Lake folder name -> schema. The warehouse tables carry the same names.
LAKE_TABLES: dict[str, pa.Schema] = {
    "intake_bots": INTAKE_BOTS,
    "intake_bot_fields": INTAKE_BOT_FIELDS,
    "submissions": SUBMISSIONS,
    "submission_answers": SUBMISSION_ANSWERS,
    "webhooks": WEBHOOKS,
}
