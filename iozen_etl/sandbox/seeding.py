"""Seeding a world: bots from ``seed.py``'s templates and their submissions, vectorised.

A million submissions must seed in seconds, so ids and times are built as numpy byte matrices
and each body is a join of three byte strings: a head with the id, the answers (one of at most
VARIANTS_PER_TEMPLATE variants per template) and a tail with the times. The same seed gives the
same bots, ids and bodies.
"""

from __future__ import annotations

import random

import numpy as np
import numpy.typing as npt

from iozen_etl.sandbox.config import SandboxConfig
from iozen_etl.sandbox.protocol import dumps
from iozen_etl.sandbox.seed import (
    SEED_END_MS,
    SEED_START_MS,
    SUMMARIES,
    TEMPLATES,
    AnswerPool,
    answer_pool,
    schema_item,
    skewed_counts,
)
from iozen_etl.sandbox.state import BotState
from iozen_etl.sandbox.timefmt import base36, cuid

VARIANTS_PER_TEMPLATE = 16_384
ID_LENGTH = 25
_DIGITS = np.frombuffer(b"0123456789abcdefghijklmnopqrstuvwxyz", dtype=np.uint8)


def seed_bots(config: SandboxConfig) -> list[BotState]:
    """The seeded bots with their submissions, oldest bot first."""
    return _Seeder(config).bots()


class _Seeder:
    """Holds the answer pools and variants that bots of the same template share."""

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.rng = random.Random(f"seed-{config.seed}")
        self.pools: list[list[AnswerPool]] = [
            [answer_pool(item, self.rng) for item in template.items if item.type is not None]
            for template in TEMPLATES
        ]
        self.variants: list[list[tuple[bytes, bool]]] = [[] for _ in TEMPLATES]

    def bots(self) -> list[BotState]:
        config, rng = self.config, self.rng
        counts = skewed_counts(rng, config.bots, config.submissions_per_bot)
        span = SEED_END_MS - SEED_START_MS
        bot_times = sorted(SEED_START_MS + rng.randrange(span // 2) for _ in range(config.bots))
        return [
            self._bot(index, created_ms, count)
            for index, (created_ms, count) in enumerate(zip(bot_times, counts, strict=True))
        ]

    def _bot(self, index: int, created_ms: int, count: int) -> BotState:
        rng = self.rng
        template = TEMPLATES[index % len(TEMPLATES)]
        generation = index // len(TEMPLATES)
        name = template.name if generation == 0 else f"{template.name} #{generation + 1}"
        bot_id = cuid(created_ms, index % (36**4), "b0t0", rng.getrandbits(41))
        share = "".join(ch for ch in name.lower() if ch.isalnum())[:10]
        share_url = f"{share}-{base36(rng.getrandbits(20), 4)}"
        bot = BotState(
            bot_id, name, template.description, created_ms, [], base36(index, 4), 1, share_url
        )
        bot.items = [schema_item(item, i + 1) for i, item in enumerate(template.items)]
        bot.schema_version = 1 + rng.randrange(4)
        self._submissions(bot, index % len(TEMPLATES), count, index)
        # A bot was last edited some time after it was created, before the clock starts.
        bot.updated_ms = created_ms + rng.randrange(max(1, (SEED_END_MS - created_ms) // 4))
        return bot

    def _submissions(self, bot: BotState, template: int, count: int, bot_index: int) -> None:
        """Fill one bot's submission lists (the draws keep this order: the seed depends on it)."""
        if count == 0:
            return
        gen = np.random.default_rng([self.config.seed, bot_index])
        times = _created_times(gen, bot.created_ms, count)
        seq = _sequence_numbers(times)
        ids = _id_matrix(times, seq, bot.fingerprint, gen)
        picks = self._pick_variants(template, count, gen)
        variants = self.variants[template]
        in_progress = np.array([variants[i][1] for i in picks], dtype=bool)
        updated = _updated_times(gen, times, in_progress)
        version = 1 + self.rng.randrange(3)
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
        middles = [variants[i][0] for i in picks]
        bot.sub_ids = ids.view(f"S{ID_LENGTH}").ravel().astype(f"U{ID_LENGTH}").tolist()
        bot.sub_bodies = [
            head + middle + tail for head, middle, tail in zip(heads, middles, tails, strict=True)
        ]
        bot.last_ms = int(times[-1])
        bot.last_seq = int(seq[-1])

    def _pick_variants(self, template: int, count: int, gen: np.random.Generator) -> list[int]:
        """Which answer variant each submission gets: new ones while the template has room."""
        variants = self.variants[template]
        fresh = min(count, VARIANTS_PER_TEMPLATE - len(variants))
        first_new = len(variants)
        variants.extend(self._answer_variant(template) for _ in range(fresh))
        picks = np.concatenate(
            [
                np.arange(first_new, first_new + fresh, dtype=np.int64),
                gen.integers(0, len(variants), size=count - fresh, dtype=np.int64),
            ]
        )
        chosen: list[int] = picks.tolist()
        return chosen

    def _answer_variant(self, template: int) -> tuple[bytes, bool]:
        """One submission's answers and flags, serialised from ``"data":`` to ``message_count``.

        Past VARIANTS_PER_TEMPLATE submissions per template the variants are reused, which
        keeps seeding a million submissions to seconds; ids and times stay unique.
        """
        rng = self.rng
        pools = self.pools[template]
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


def _created_times(gen: np.random.Generator, start: int, count: int) -> npt.NDArray[np.int64]:
    """Sorted creation times between the bot's creation and an hour before the clock starts."""
    span = max(1, SEED_END_MS - 3_600_000 - start)
    return np.sort(gen.integers(start, start + span, size=count, dtype=np.int64))


def _sequence_numbers(times: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """0 for the first submission of each millisecond, then 1, 2, ... (as ``BotState.mint_id``)."""
    positions = np.arange(len(times), dtype=np.int64)
    first_of_run = np.ones(len(times), dtype=bool)
    first_of_run[1:] = times[1:] != times[:-1]
    seq: npt.NDArray[np.int64] = positions - np.maximum.accumulate(
        np.where(first_of_run, positions, 0)
    )
    return seq


def _id_matrix(
    times: npt.NDArray[np.int64],
    seq: npt.NDArray[np.int64],
    fingerprint: str,
    gen: np.random.Generator,
) -> npt.NDArray[np.uint8]:
    """The ids as ``timefmt.cuid`` writes them, one row of ASCII bytes per submission."""
    count = len(times)
    noise = gen.integers(0, 36**8, size=count, dtype=np.int64)
    ids = np.empty((count, ID_LENGTH), dtype=np.uint8)
    ids[:, 0] = ord("c")
    _base36_into(ids[:, 1:9], times)
    _base36_into(ids[:, 9:13], seq)
    ids[:, 13:17] = np.frombuffer(fingerprint.encode(), dtype=np.uint8)
    _base36_into(ids[:, 17:25], noise)
    return ids


def _updated_times(
    gen: np.random.Generator, times: npt.NDArray[np.int64], in_progress: npt.NDArray[np.bool_]
) -> npt.NDArray[np.int64]:
    """When each submission was last touched: minutes later, or days for a few late edits."""
    count = len(times)
    late = gen.random(count) < 0.05
    offsets = np.where(
        in_progress,
        gen.integers(0, 600_000, size=count),
        np.where(
            late,
            gen.integers(0, 432_000_000, size=count),
            gen.integers(0, 1_200_000, size=count),
        ),
    )
    updated: npt.NDArray[np.int64] = np.minimum(times + offsets, SEED_END_MS - 1)
    return updated


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
