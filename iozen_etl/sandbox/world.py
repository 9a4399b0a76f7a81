"""The sandbox's data: bots, their submissions, webhooks and keys, and the moves that change them.

Each bot keeps its submissions as two parallel lists sorted by (created_at, id): the ids and the
submission's list-item JSON, serialised once. Ids are minted so that id order is creation order
within a bot (see ``timefmt.cuid``), so a cursor is found by bisecting the id list and a page
body is a join of stored bytes. Nothing here locks: ``Sandbox`` serialises access.
"""

from __future__ import annotations

import bisect
import json
import random
import zlib
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from iozen_etl.sandbox.clock import SandboxClock
from iozen_etl.sandbox.config import SandboxConfig
from iozen_etl.sandbox.seed import (
    SEED_END_MS,
    SEED_START_MS,
    SUMMARIES,
    TEMPLATES,
    AnswerPool,
    FieldTemplate,
    answer_pool,
    schema_item,
    skewed_counts,
    value_pool,
)
from iozen_etl.sandbox.timefmt import base36, cuid, iso_ms, parse_iso_ms

VARIANTS_PER_TEMPLATE = 16_384
_DIGITS = np.frombuffer(b"0123456789abcdefghijklmnopqrstuvwxyz", dtype=np.uint8)
_ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def _base36_into(out: npt.NDArray[np.uint8], values: npt.NDArray[np.int64]) -> None:
    """Write fixed-width base-36 ASCII digits of each value into the rows of ``out``."""
    rest = values.copy()
    for column in range(out.shape[1] - 1, -1, -1):
        out[:, column] = _DIGITS[rest % 36]
        rest //= 36


def _iso_matrix(ms: npt.NDArray[np.int64]) -> npt.NDArray[np.uint8]:
    """``YYYY-MM-DDTHH:MM:SS.mmm`` of each time, one row of 23 ASCII bytes per time."""
    text = np.datetime_as_string(ms.astype("datetime64[ms]"), unit="ms").astype("S23")
    return text.view(np.uint8).reshape(len(ms), 23)


def _rows(parts: list[bytes | npt.NDArray[np.uint8]]) -> list[bytes]:
    """Concatenate constant byte strings and per-row byte matrices into one bytes per row."""
    count = next(len(p) for p in parts if isinstance(p, np.ndarray))
    columns = [
        np.broadcast_to(np.frombuffer(p, dtype=np.uint8), (count, len(p)))
        if isinstance(p, bytes)
        else p
        for p in parts
    ]
    matrix = np.ascontiguousarray(np.concatenate(columns, axis=1))
    rows: list[bytes] = matrix.view(f"S{matrix.shape[1]}").ravel().tolist()
    return rows


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON, the form every stored body uses."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


@dataclass
class KeyState:
    plan: str
    scopes: tuple[str, ...]
    window: deque[float] = field(default_factory=deque)  # times of counted requests


class BotState:
    """One intake bot and its submissions, in order."""

    def __init__(
        self,
        bot_id: str,
        name: str,
        description: str,
        created_ms: int,
        items: list[dict[str, Any]],
        fingerprint: str,
        schema_version: int,
        share_url: str,
    ) -> None:
        self.id = bot_id
        self.name = name
        self.description = description
        self.status = "ACTIVE"
        self.created_ms = created_ms
        self.updated_ms = created_ms
        self.items = items
        self.fingerprint = fingerprint
        self.schema_version = schema_version
        self.share_url = share_url
        self.sub_ids: list[str] = []
        self.sub_bodies: list[bytes] = []
        self.last_ms = 0
        self.last_seq = 0
        self._list_schema: bytes | None = None

    def mint_id(self, ms: int, rng: random.Random) -> tuple[str, int]:
        """A submission id greater than every id this bot has, and its (possibly nudged) time."""
        ms = max(ms, self.last_ms)
        seq = self.last_seq + 1 if ms == self.last_ms else 0
        self.last_ms, self.last_seq = ms, seq
        return cuid(ms, seq, self.fingerprint, rng.getrandbits(41)), ms

    def fields(self) -> list[dict[str, Any]]:
        return [item for item in self.items if item.get("kind", "field") == "field"]

    def list_schema(self) -> bytes:
        """The submissions list's sibling ``schema``: fields only, ``{name, label, type}``."""
        if self._list_schema is None:
            self._list_schema = dumps(
                [{"name": f["name"], "label": f["label"], "type": f["type"]} for f in self.fields()]
            )
        return self._list_schema

    def schema_changed(self) -> None:
        self._list_schema = None

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "status": self.status,
            "submission_count": len(self.sub_ids),
            "created_at": iso_ms(self.created_ms),
            "updated_at": iso_ms(self.updated_ms),
        }

    def detail(self, shape: str) -> dict[str, Any]:
        schema: Any
        if shape == "legacy":
            schema = [_legacy_item(item) for item in self.fields()]
        else:
            schema = {"fields": [dict(item) for item in self.items]}
        return {
            "id": self.id,
            "name": self.name,
            "status": self.status,
            "description": self.description,
            "share_url": self.share_url,
            "submission_count": len(self.sub_ids),
            "schema": schema,
            "created_at": iso_ms(self.created_ms),
            "updated_at": iso_ms(self.updated_ms),
        }

    def position(self, submission_id: str) -> int | None:
        index = bisect.bisect_left(self.sub_ids, submission_id)
        if index < len(self.sub_ids) and self.sub_ids[index] == submission_id:
            return index
        return None

    def append(self, submission_id: str, body: bytes) -> None:
        if self.sub_ids and submission_id < self.sub_ids[-1]:
            index = bisect.bisect_left(self.sub_ids, submission_id)
            self.sub_ids.insert(index, submission_id)
            self.sub_bodies.insert(index, body)
        else:
            self.sub_ids.append(submission_id)
            self.sub_bodies.append(body)


def _legacy_item(item: dict[str, Any]) -> dict[str, Any]:
    # The older shape (OP-GB) predates content blocks and calls short text "text".
    legacy: dict[str, Any] = {
        "name": item["name"],
        "label": item["label"],
        "type": "text" if item["type"] == "short_text" else item["type"],
        "required": item["required"],
    }
    if "options" in item:
        legacy["options"] = item["options"]
    return legacy


@dataclass
class WebhookState:
    id: str
    url: str
    events: list[str]
    description: str | None
    secret: str
    created_ms: int
    updated_ms: int
    status: str = "active"
    last_delivery_ms: int | None = None
    last_delivery_ok: bool | None = None
    consecutive_fails: int = 0

    def wire(self, with_secret: bool = False) -> dict[str, Any]:
        wire: dict[str, Any] = {
            "id": self.id,
            "url": self.url,
            "events": list(self.events),
            "status": self.status,
            "description": self.description,
            "last_delivery_at": None
            if self.last_delivery_ms is None
            else iso_ms(self.last_delivery_ms),
            "last_delivery_ok": self.last_delivery_ok,
            "consecutive_fails": self.consecutive_fails,
            "created_at": iso_ms(self.created_ms),
            "updated_at": iso_ms(self.updated_ms),
        }
        if with_secret:
            wire["secret"] = self.secret
        return wire


def submission_body(
    submission_id: str,
    data: dict[str, Any],
    status: str,
    ai_summary: str | None,
    is_test: bool,
    file_count: int,
    message_count: int,
    schema_version: int,
    created_ms: int,
    updated_ms: int,
) -> bytes:
    return dumps(
        {
            "id": submission_id,
            "data": data,
            "status": status,
            "ai_summary": ai_summary,
            "is_test": is_test,
            "file_count": file_count,
            "message_count": message_count,
            "schema_version": schema_version,
            "created_at": iso_ms(created_ms),
            "updated_at": iso_ms(updated_ms),
        }
    )


def count_files(bot: BotState, data: dict[str, Any]) -> int:
    file_fields = {f["name"] for f in bot.fields() if f["type"] == "file"}
    return sum(
        len(value) if isinstance(value, list) else 1
        for name, value in data.items()
        if name in file_fields and value not in (None, "", [])
    )


def count_messages(data: dict[str, Any]) -> int:
    """A welcome, then a question and an answer per answered field (see ``messages``)."""
    return 1 + 2 * sum(1 for value in data.values() if value is not None)


def messages(bot: BotState, submission: dict[str, Any]) -> list[dict[str, Any]]:
    """The conversation behind a submission, rebuilt from its answers (deterministic)."""
    if submission["message_count"] == 0:
        return []
    labels = {f["name"]: f["label"] for f in bot.fields()}
    start = parse_iso_ms(submission["created_at"])
    salt = zlib.crc32(submission["id"].encode())
    turns: list[tuple[str, str]] = [("assistant", f"Welcome to {bot.name}! Let's get started.")]
    for name, value in submission["data"].items():
        if value is None:
            continue
        answer = ", ".join(map(str, value)) if isinstance(value, list) else str(value)
        if isinstance(value, bool):
            answer = "Yes" if value else "No"
        turns.append(("assistant", f"{labels.get(name, name)}?"))
        turns.append(("user", answer))
    return [
        {
            "id": cuid(start + 15_000 * i, i, bot.fingerprint, (salt * 7919 + i) % (1 << 41)),
            "role": role,
            "content": content,
            "created_at": iso_ms(start + 15_000 * i),
        }
        for i, (role, content) in enumerate(turns)
    ]


class World:
    """All state of one sandbox workspace."""

    def __init__(self, config: SandboxConfig, clock: SandboxClock) -> None:
        self.config = config
        self.clock = clock
        self.rng = random.Random(f"world-{config.seed}")
        self.bots: dict[str, BotState] = {}
        self.bot_ids: list[str] = []
        self.webhooks: dict[str, WebhookState] = {}
        self.webhook_ids: list[str] = []
        self.keys: dict[str, KeyState] = {}
        self.api_created = 0  # submissions created through POST, for the plan quota
        self._last_global_ms = 0
        self._global_seq = 0
        self._pools: list[list[AnswerPool]] = []
        self._variants: list[list[tuple[bytes, bool]]] = [[] for _ in TEMPLATES]

    # ids and keys -------------------------------------------------------------------------

    def mint_global_id(self, ms: int, fingerprint: str) -> str:
        ms = max(ms, self._last_global_ms)
        self._global_seq = self._global_seq + 1 if ms == self._last_global_ms else 0
        self._last_global_ms = ms
        return cuid(ms, self._global_seq, fingerprint, self.rng.getrandbits(41))

    def new_key(self, scopes: tuple[str, ...], plan: str, key: str | None = None) -> str:
        if key is None:
            key = "iozen_live_" + "".join(self.rng.choice(_ALNUM) for _ in range(32))
        self.keys[key] = KeyState(plan, scopes)
        return key

    def now_ms(self) -> int:
        return int(self.clock.now() * 1000)

    # seeding ------------------------------------------------------------------------------

    def seed(self) -> None:
        config = self.config
        rng = random.Random(f"seed-{config.seed}")
        self._pools = [
            [answer_pool(item, rng) for item in template.items if item.type is not None]
            for template in TEMPLATES
        ]
        counts = skewed_counts(rng, config.bots, config.submissions_per_bot)
        span = SEED_END_MS - SEED_START_MS
        bot_times = sorted(SEED_START_MS + rng.randrange(span // 2) for _ in range(config.bots))
        for index, (created_ms, count) in enumerate(zip(bot_times, counts, strict=True)):
            template = TEMPLATES[index % len(TEMPLATES)]
            generation = index // len(TEMPLATES)
            name = template.name if generation == 0 else f"{template.name} #{generation + 1}"
            bot = self._make_bot(index, name, template.description, created_ms, rng)
            items = [schema_item(item, i + 1) for i, item in enumerate(template.items)]
            bot.items = items
            bot.schema_version = 1 + rng.randrange(4)
            self._register_bot(bot)
            self._seed_submissions(bot, index % len(TEMPLATES), count, index, rng)
            # A bot was last edited some time after it was created, before the clock starts.
            bot.updated_ms = created_ms + rng.randrange(max(1, (SEED_END_MS - created_ms) // 4))

    def _make_bot(
        self, index: int, name: str, description: str, created_ms: int, rng: random.Random
    ) -> BotState:
        bot_id = cuid(created_ms, index % (36**4), "b0t0", rng.getrandbits(41))
        share = "".join(ch for ch in name.lower() if ch.isalnum())[:10]
        share_url = f"{share}-{base36(rng.getrandbits(20), 4)}"
        return BotState(bot_id, name, description, created_ms, [], base36(index, 4), 1, share_url)

    def _register_bot(self, bot: BotState) -> None:
        self.bots[bot.id] = bot
        bisect.insort(self.bot_ids, bot.id)

    def _seed_submissions(
        self, bot: BotState, template: int, count: int, bot_index: int, rng: random.Random
    ) -> None:
        """Seed one bot's submissions, vectorised: ids and times are built as byte matrices."""
        if count == 0:
            return
        gen = np.random.default_rng([self.config.seed, bot_index])
        start = bot.created_ms
        span = max(1, SEED_END_MS - 3_600_000 - start)
        times = np.sort(gen.integers(start, start + span, size=count, dtype=np.int64))
        positions = np.arange(count, dtype=np.int64)
        first_of_run = np.ones(count, dtype=bool)
        first_of_run[1:] = times[1:] != times[:-1]
        seq = positions - np.maximum.accumulate(np.where(first_of_run, positions, 0))
        noise = gen.integers(0, 36**8, size=count, dtype=np.int64)
        ids = np.empty((count, 25), dtype=np.uint8)
        ids[:, 0] = ord("c")
        _base36_into(ids[:, 1:9], times)
        _base36_into(ids[:, 9:13], seq)
        ids[:, 13:17] = np.frombuffer(bot.fingerprint.encode(), dtype=np.uint8)
        _base36_into(ids[:, 17:25], noise)

        variants = self._variants[template]
        fresh = min(count, VARIANTS_PER_TEMPLATE - len(variants))
        first_new = len(variants)
        variants.extend(self._answer_variant(template, rng) for _ in range(fresh))
        picks = np.concatenate(
            [
                np.arange(first_new, first_new + fresh, dtype=np.int64),
                gen.integers(0, len(variants), size=count - fresh, dtype=np.int64),
            ]
        )
        in_progress = np.array([variants[i][1] for i in picks.tolist()], dtype=bool)
        late = gen.random(count) < 0.05  # edited days later
        offsets = np.where(
            in_progress,
            gen.integers(0, 600_000, size=count),
            np.where(
                late,
                gen.integers(0, 432_000_000, size=count),
                gen.integers(0, 1_200_000, size=count),
            ),
        )
        updated = np.minimum(times + offsets, SEED_END_MS - 1)
        version = 1 + rng.randrange(3)
        heads = _rows([b'{"id":"', ids])
        tails = _rows(
            [
                f',"schema_version":{version},"created_at":"'.encode(),
                _iso_matrix(times),
                b'Z","updated_at":"',
                _iso_matrix(updated),
                b'Z"}',
            ]
        )
        middles = [variants[i][0] for i in picks.tolist()]
        bot.sub_ids = ids.view("S25").ravel().astype("U25").tolist()
        bot.sub_bodies = [
            head + middle + tail for head, middle, tail in zip(heads, middles, tails, strict=True)
        ]
        bot.last_ms = int(times[-1])
        bot.last_seq = int(seq[-1])

    def _answer_variant(self, template: int, rng: random.Random) -> tuple[bytes, bool]:
        """One submission's answers and flags, serialised from ``"data":`` to ``message_count``.

        Past VARIANTS_PER_TEMPLATE submissions per template the variants are reused, which
        keeps seeding a million submissions to seconds; ids and times stay unique.
        """
        pools = self._pools[template]
        rnd = rng.random
        in_progress = rnd() < self.config.in_progress_share
        stop_at = int(rnd() * len(pools)) if in_progress else len(pools)
        parts: list[bytes] = []
        answered = 0
        files = 0
        for pool in pools[:stop_at]:
            roll = 1.0 if pool.required and not in_progress else rnd()
            if roll < 0.08:
                continue  # left out: the key is absent
            if roll < 0.14:
                parts.append(pool.null_fragment)
                continue
            pick = int(rnd() * len(pool.fragments))
            parts.append(pool.fragments[pick])
            files += pool.file_counts[pick]
            answered += 1
        if in_progress:
            status, summary = "IN_PROGRESS", "null"
        else:
            status = "COMPLETED"
            summary = "null" if rnd() < 0.1 else dumps(rng.choice(SUMMARIES)).decode()
        is_test = "true" if rnd() < 0.05 else "false"
        tail = (
            f'}},"status":"{status}","ai_summary":{summary},"is_test":{is_test},'
            f'"file_count":{files},"message_count":{1 + 2 * answered}'
        )
        return b'","data":{' + b",".join(parts) + tail.encode(), in_progress

    # world moves --------------------------------------------------------------------------

    def add_bot(self, name: str, items: list[dict[str, Any]] | None, description: str) -> BotState:
        now = self.now_ms()
        index = len(self.bots)
        bot_id = self.mint_global_id(now, "b0t1")
        share_url = f"bot-{base36(self.rng.getrandbits(20), 4)}"
        bot = BotState(bot_id, name, description, now, [], base36(index, 4), 1, share_url)
        if items is None:
            items = [schema_item(item, i + 1) for i, item in enumerate(TEMPLATES[0].items)]
        bot.items = items
        self._register_bot(bot)
        return bot

    def remove_bot(self, bot_id: str) -> None:
        del self.bots[bot_id]
        self.bot_ids.remove(bot_id)

    def insert_submission(
        self,
        bot: BotState,
        data: dict[str, Any],
        status: str,
        is_test: bool,
        from_api: bool,
    ) -> dict[str, Any]:
        submission_id, created_ms = bot.mint_id(self.now_ms(), self.rng)
        body = submission_body(
            submission_id,
            data,
            status,
            None,
            is_test,
            count_files(bot, data),
            0 if from_api else count_messages(data),
            bot.schema_version,
            created_ms,
            created_ms,
        )
        bot.append(submission_id, body)
        if self.config.bot_touch_on_submission:
            bot.updated_ms = max(bot.updated_ms, created_ms)
        return {
            "id": submission_id,
            "status": status,
            "created_at": iso_ms(created_ms),
            "data": data,
        }

    def random_answers(self, bot: BotState) -> dict[str, Any]:
        """Answers for a generated submission: every required field, most optional ones."""
        rng = self.rng
        answers: dict[str, Any] = {}
        for item in bot.fields():
            if not item["required"] and rng.random() < 0.2:
                continue
            template = FieldTemplate(
                item["name"], item["label"], item["type"], options=tuple(item.get("options", ()))
            )
            pool = value_pool(template, rng)
            answers[item["name"]] = rng.choice(pool) if pool else None
        return answers

    def replace_submission(
        self, bot: BotState, index: int, status: str | None, data: dict[str, Any] | None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Apply an edit; returns (before, after) as wire dicts. updated_at moves forward."""
        before = json.loads(bot.sub_bodies[index])
        after = dict(before)
        if data is not None:
            merged = dict(before["data"])
            merged.update(data)
            after["data"] = merged
            after["file_count"] = count_files(bot, merged)
            if after["message_count"]:
                after["message_count"] = count_messages(merged)
        if status is not None:
            after["status"] = status
        previous = parse_iso_ms(before["updated_at"])
        after["updated_at"] = iso_ms(max(self.now_ms(), previous + 1))
        bot.sub_bodies[index] = dumps(after)
        return before, after
