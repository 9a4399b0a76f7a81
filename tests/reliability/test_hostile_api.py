"""Hostile input from the API (category "hostile API").

One bot of a small sandbox, the target, is served in a hostile form by a transport wrapped around
the sandbox: ids that are path tricks, control and NUL characters, megabyte strings, deep or
wrongly typed answers, items repeated across pages, missing or null fields, timestamps out of
order or in other offsets. The other bots come from the sandbox untouched. Each case syncs (bots,
then submissions) into a fresh data directory and loads the warehouse, then checks that

- the target is stored as it was served (read back from the published warehouse; timestamps
  compared as instants), or only the target failed, with its report naming the field (and the
  request id when the answer itself was unreadable), and whatever was stored of it was served;
- every other bot completed and matches the sandbox's truth;
- nothing was written outside the data directory.

The hostile values are drawn from generators seeded per case; ``--long`` runs more seeds.
(tests/sync/test_extract_edges.py checks the lake alone for a few bot ids that try to escape.)
"""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
import pytest

from iozen_etl.sandbox import Sandbox, SandboxConfig, sandbox_transport
from iozen_etl.settings import DataPaths
from iozen_etl.sync.reports import BotsReport, SubmissionsReport
from iozen_etl.warehouse import load_warehouse
from tests.support.reliability import Ledger, iterations
from tests.support.sandbox import fake_time_client
from tests.support.sync import Workspace
from tests.support.warehouse import Published
from tests.support.wire import rewrite_json

CATEGORY = "hostile API"
UNLIMITED = 10**9
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

Item = dict[str, Any]
Edit = Callable[[Item, random.Random], None]

# Pieces of hostile text: control characters and NUL, line and paragraph separators, bidi
# overrides, combining marks, astral characters, quotes and path and SQL fragments.
PIECES = (
    "\x00",
    "\x01",
    "\x07",
    "\x1b[31m",
    "\r\n",
    "\t",
    "\x7f",
    "\x85",
    "\u2028",
    "\u202e",
    "\ufeff",
    "u\u0308",
    "Ω",
    "бот",
    "中文",
    "🤖",
    "👩\u200d👩\u200d👧",
    "'",
    '"',
    "\\",
    "`",
    "%s",
    "{}",
    "../",
    "'; drop table submissions; --",
    "<script>",
)


def hostile_text(rng: random.Random, pieces: int = 12) -> str:
    return "".join(rng.choice(PIECES) for _ in range(pieces))


def instant(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp).astimezone(UTC)


def epoch_ms(stamp: str) -> int:
    """The instant in the lake's unit (milliseconds, finer digits cut)."""
    return (instant(stamp) - EPOCH) // timedelta(milliseconds=1)


# -- the hostile edits of one submission (seeded per submission) ------------------------------


def _submission_id(item: Item, rng: random.Random) -> None:
    item["id"] = rng.choice(["../", "/", "..\\", "bot_id=", "*?", "\x00", "ü", ".."]) + item["id"]


def _control_answers(item: Item, rng: random.Random) -> None:
    for name in list(item["data"]):
        if rng.random() < 0.5:
            item["data"][name] = hostile_text(rng)
    item["data"]["hostile"] = hostile_text(rng)
    item["ai_summary"] = hostile_text(rng)


def _field_names(item: Item, rng: random.Random) -> None:
    for _ in range(3):
        item["data"][hostile_text(rng, 4)] = rng.choice(["x", 1, None, [1, "a"]])
    item["data"][""] = "empty name"
    item["data"]["n" * 5000] = "a long name"


def _megabyte(item: Item, rng: random.Random) -> None:
    unit = hostile_text(rng, 64)
    item["data"]["notes"] = unit * (1_048_576 // len(unit) + 1)


def _deep(item: Item, rng: random.Random) -> None:
    value: Any = "bottom"
    for level in range(rng.randint(200, 400)):
        value = [value] if level % 2 else {"k": value, "n": level}
    item["data"]["deep"] = value


WRONG_VALUES: tuple[Any, ...] = (
    0,
    -1,
    2**70,
    -(2**64),
    1e308,
    -0.0,
    0.1,
    True,
    False,
    None,
    [],
    {},
    [[1, [2]], {"a": None}],
    {"nested": {"list": [True, None, "x"]}},
    ["a", 1, None, True, 2.5],
    "",
)


def _wrong_types(item: Item, rng: random.Random) -> None:
    for name in [*item["data"], "extra_field"]:
        item["data"][name] = copy.deepcopy(rng.choice(WRONG_VALUES))


def _lone_surrogates(item: Item, rng: random.Random) -> None:
    item["data"]["half"] = "ok " + rng.choice(["\ud800", "\udfff", "\udc80x"]) + " end"


def _null_fields(item: Item, rng: random.Random) -> None:
    optional = ["status", "ai_summary", "is_test", "file_count", "message_count", "data"]
    for name in rng.sample(optional, rng.randint(1, len(optional))):
        item[name] = None


def _missing_fields(item: Item, rng: random.Random) -> None:
    optional = ["status", "ai_summary", "is_test", "file_count", "message_count", "data"]
    optional.append("schema_version")
    for name in rng.sample(optional, rng.randint(1, len(optional))):
        del item[name]


def _offsets(item: Item, rng: random.Random) -> None:
    for name in ("created_at", "updated_at"):
        minutes = rng.choice([-12 * 60, -8 * 60, -150, 0, 5 * 60 + 30, 5 * 60 + 45, 14 * 60])
        moved = instant(item[name]).astimezone(timezone(timedelta(minutes=minutes)))
        item[name] = moved.isoformat(timespec=rng.choice(["seconds", "milliseconds"]))


def _micro(item: Item, rng: random.Random) -> None:
    for name in ("created_at", "updated_at"):
        fine = instant(item[name]) + timedelta(microseconds=rng.randint(0, 999))
        item[name] = fine.isoformat(timespec="microseconds").replace("+00:00", "Z")


def _scatter(item: Item, rng: random.Random) -> None:
    at = datetime(1971, 1, 1, tzinfo=UTC) + timedelta(seconds=rng.randint(0, 2_000_000_000))
    item["created_at"] = at.isoformat(timespec="milliseconds")
    item["updated_at"] = (at + timedelta(days=rng.randint(0, 900))).isoformat()


def _extreme(item: Item, rng: random.Random) -> None:
    item["created_at"] = rng.choice(["0001-01-01T00:00:00.000Z", "1900-02-28T23:59:59.999Z"])
    item["updated_at"] = rng.choice(["9999-12-31T23:59:59.999Z", "2262-04-12T00:00:00Z"])


def _setter(key: str, value: Any) -> Edit:
    def edit(item: Item, rng: random.Random) -> None:
        item[key] = copy.deepcopy(value)

    return edit


def _drop(key: str) -> Edit:
    def edit(item: Item, rng: random.Random) -> None:
        del item[key]

    return edit


# -- the hostile edits of the bot (listing and detail alike) ----------------------------------


def _bot_text(bot: Item, rng: random.Random) -> None:
    bot["name"] = hostile_text(rng, 20)
    bot["description"] = hostile_text(rng, 200)


def _bot_null_name(bot: Item, rng: random.Random) -> None:
    bot["name"] = None
    bot["description"] = None


def _schema_names(bot: Item, rng: random.Random) -> None:
    if "schema" not in bot:
        return
    fields = bot["schema"]["fields"] if isinstance(bot["schema"], dict) else bot["schema"]
    for field in fields:
        field["name"] = hostile_text(rng, 6)
        field["label"] = hostile_text(rng, 6)
        field["options"] = [hostile_text(rng, 3), 5, None]
    fields.append({"id": "f_long", "kind": "field", "name": "n" * 3000, "type": "hostile type"})


def _schema_wrong_type(bot: Item, rng: random.Random) -> None:
    if "schema" in bot:
        bot["schema"] = "fields"


@dataclass(frozen=True)
class Case:
    name: str
    bot_id: str | None = None  # the target's id as served ({outside}: a path outside the jail)
    item: Edit | None = None
    share: float = 0.5  # of the target's submissions the item edit applies to
    bot: Edit | None = None
    page: str | None = None  # "repeat": a page starts with the last item of the page before;
    # "twice": its first item again at its end; "reverse"; "junk": a string among the items
    page_size: int | None = None  # ask for pages this small, so a bot has several
    fails: tuple[str, ...] = ()  # the target must fail, its error holding these


CASES = (
    # ids that are path tricks (each also a segment of the lake's paths)
    Case("bot id ../x", bot_id="../x"),
    Case("bot id a/b", bot_id="a/b"),
    Case("bot id ..", bot_id=".."),
    Case("bot id .", bot_id="."),
    Case("bot id absolute path", bot_id="{outside}/bot"),
    Case("bot id backslashes", bot_id="..\\..\\x"),
    Case("bot id hive partition", bot_id="x/bot_id=y"),
    Case("bot id glob", bot_id="*[a-z]?"),
    Case("bot id very long", bot_id="L" * 2000),
    Case("bot id non-ASCII", bot_id="бот-Ωmega-中文-🤖-u\u0308"),
    Case("bot id control and NUL", bot_id="a\x00b\r\n\x1b[31m\x7f"),
    Case("submission ids path tricks", item=_submission_id),
    # values in data
    Case("control and NUL characters", item=_control_answers),
    Case("hostile field names", item=_field_names),
    Case("megabyte strings", item=_megabyte, share=0.15),
    Case("deeply nested values", item=_deep),
    Case("wrongly typed values", item=_wrong_types),
    Case("lone surrogates", item=_lone_surrogates),
    # the shape of items and pages
    Case("item repeated across pages", page="repeat", page_size=4),
    Case("item repeated within a page", page="twice"),
    Case("null fields", item=_null_fields),
    Case("missing fields", item=_missing_fields),
    # timestamps
    Case("timestamps in other offsets", item=_offsets, share=1.0),
    Case("timestamps finer than milliseconds", item=_micro),
    Case("timestamps out of order", page="reverse", page_size=5),
    Case("timestamps scattered over decades", item=_scatter, page_size=5),
    Case("extreme timestamps", item=_extreme),
    # what cannot be stored: only the target fails
    Case("submission without id", item=_drop("id"), share=0.3, fails=("'id'", "request id req_")),
    Case(
        "updated_at null",
        item=_setter("updated_at", None),
        share=0.3,
        fails=("'updated_at'", "request id req_"),
    ),
    Case(
        "data not an object",
        item=_setter("data", ["a", "b"]),
        share=0.3,
        fails=("'data'", "request id req_"),
    ),
    Case(
        "updated_at not a time",
        item=_setter("updated_at", "yesterday"),
        share=0.3,
        fails=("'updated_at'", "not an ISO-8601"),
    ),
    Case("item not an object", page="junk", fails=("submissions[", "request id req_")),
    # the bot itself
    Case("hostile bot name and description", bot=_bot_text),
    Case("null bot name and description", bot=_bot_null_name),
    Case("hostile schema", bot=_schema_names),
    Case("schema of the wrong type", bot=_schema_wrong_type, fails=("schema", "request id req_")),
)


class HostileServer:
    """The sandbox behind a transport that serves its first bot (the target) as ``case`` says,
    and remembers the newest version of each of the target's submissions as served."""

    def __init__(self, box: Sandbox, case: Case, seed: int, outside: Path) -> None:
        self.case = case
        self.seed = seed
        self.real = box.bot_ids()[0]
        self.alias = case.bot_id.format(outside=outside) if case.bot_id else self.real
        self.served: dict[str, Item] = {}  # submission id as served -> newest version served
        self.by_real_id: dict[str, Item] = {}  # sandbox id -> the item as served
        self.edited: set[str] = set()
        # Which submissions the item edit applies to: a seeded share, at least one.
        ids = box.submission_ids(self.real)
        count = max(1, round(case.share * len(ids)))
        self.to_edit = set(self._rng("chosen").sample(ids, count))
        self.bot: Item | None = None
        self.transport = rewrite_json(sandbox_transport(box), self._request, self._response)

    def _rng(self, key: str) -> random.Random:
        return random.Random(f"{self.seed}:{self.case.name}:{key}")

    def _request(self, request: httpx.Request) -> httpx.Request:
        raw_path, _, query = request.url.raw_path.decode("ascii").partition("?")
        segments = raw_path.split("/")
        for index, segment in enumerate(segments):
            if (
                index > 0
                and segments[index - 1] == "intake-bots"
                and unquote(segment) == self.alias
            ):
                segments[index] = self.real
        url = request.url.copy_with(raw_path=("/".join(segments) + "?" + query).encode("ascii"))
        if self.case.page_size and segments[-2:] == [self.real, "submissions"]:
            url = url.copy_set_param("limit", str(self.case.page_size))
        return httpx.Request(request.method, url, headers=request.headers)

    def _response(self, request: httpx.Request, body: Any) -> Any:
        path = [
            unquote(part) for part in request.url.raw_path.decode().partition("?")[0].split("/")
        ]
        rest = path[path.index("intake-bots") + 1 :]
        data = body["data"]
        if not rest:
            for bot in data["intake_bots"]:
                if bot["id"] == self.real:
                    self._edit_bot(bot)
        elif rest == [self.real]:
            self._edit_bot(data.get("intake_bot", data))
        elif rest == [self.real, "submissions"]:
            data["submissions"] = self._page(data["submissions"], request.url.params.get("cursor"))
        elif rest[:2] == [self.real, "submissions"]:
            detail = data.get("submission", data)
            self._edit_item(detail)
            self._record(detail)
        return body

    def _edit_bot(self, bot: Item) -> None:
        bot["id"] = self.alias
        if self.case.bot is not None:
            self.case.bot(bot, self._rng("bot"))
        self.bot = copy.deepcopy(bot)

    def _edit_item(self, item: Item) -> None:
        real_id = item["id"]
        if self.case.item is not None and real_id in self.to_edit:
            self.case.item(item, self._rng(real_id))
            self.edited.add(real_id)

    def _page(self, items: list[Item], cursor: str | None) -> list[Any]:
        page: list[Any] = []
        if self.case.page == "repeat" and cursor in self.by_real_id:
            page.append(copy.deepcopy(self.by_real_id[cursor]))
            self.edited.add(cursor)
        for item in items:
            real_id = item["id"]
            self._edit_item(item)
            self.by_real_id[real_id] = item
            page.append(item)
        if self.case.page == "twice" and page:
            page.append(copy.deepcopy(page[0]))
            self.edited.add(page[0]["id"])
        elif self.case.page == "reverse":
            page.reverse()
            self.edited.update(item["id"] for item in page)
        elif self.case.page == "junk" and page:
            page.insert(len(page) // 2, "not a submission")
            self.edited.add("junk")
        for item in page:
            self._record(item)
        return page

    def _record(self, item: Any) -> None:
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            return
        held = self.served.get(item["id"])
        try:
            newer = held is None or instant(item["updated_at"]) >= instant(held["updated_at"])
        except (KeyError, TypeError, ValueError):
            newer = held is None
        if newer:
            self.served[item["id"]] = copy.deepcopy(item)


# -- what is stored, and what should be ---------------------------------------------------------

Facts = tuple[Any, ...]


def served_facts(item: Item, bot_id: str) -> Facts:
    return (
        bot_id,
        item.get("status"),
        epoch_ms(item["created_at"]),
        epoch_ms(item["updated_at"]),
        item.get("data") or {},
        item.get("message_count"),
    )


def answer_keys(submission_id: str, data: Item) -> set[tuple[str, str, int]]:
    keys = set()
    for name, value in data.items():
        for position in range(len(value)) if isinstance(value, list) else [0]:
            keys.add((submission_id, name, position))
    return keys


@dataclass
class Stored:
    """The published warehouse, by bot."""

    submissions: dict[str, dict[str, Facts]]
    answers: dict[str, set[tuple[str, str, int]]]
    bots: dict[str, str | None]  # id -> name
    fields: dict[str, list[str]]  # bot id -> field names in schema order

    @classmethod
    def read(cls, paths: DataPaths) -> Stored:
        with Published(paths) as published:
            rows = published.rows(
                "select id, intake_bot_id, status, epoch_ms(created_at), epoch_ms(updated_at),"
                " data, message_count from submissions"
            )
            answer_rows = published.rows(
                "select intake_bot_id, submission_id, field_name, position from submission_answers"
            )
            bots = dict(published.rows("select id, name from intake_bots"))
            field_rows = published.rows(
                "select intake_bot_id, name from intake_bot_fields order by intake_bot_id, position"
            )
        submissions: dict[str, dict[str, Facts]] = {}
        for sid, bot_id, status, created, updated, data, messages in rows:
            facts = (bot_id, status, created, updated, json.loads(data), messages)
            assert sid not in submissions.setdefault(bot_id, {}), f"duplicate {sid!r}"
            submissions[bot_id][sid] = facts
        answers: dict[str, set[tuple[str, str, int]]] = {}
        for bot_id, sid, name, position in answer_rows:
            answers.setdefault(bot_id, set()).add((sid, name, position))
        fields: dict[str, list[str]] = {}
        for bot_id, name in field_rows:
            fields.setdefault(bot_id, []).append(name)
        return cls(submissions, answers, bots, fields)


def files_outside(around: Path, data_dir: Path, before: set[Path]) -> list[Path]:
    """Paths under ``around`` that are new and not in the data directory, and paths in the data
    directory that resolve outside it."""
    data = data_dir.resolve()
    outside = [
        path
        for path in around.rglob("*")
        if path not in before and not (path == data_dir or path.is_relative_to(data_dir))
    ]
    outside += [path for path in data_dir.rglob("*") if not path.resolve().is_relative_to(data)]
    return outside


def failure_of(case_alias: str, bots: BotsReport, subs: SubmissionsReport) -> str | None:
    """The target's error: its detail's (``"id: error"``) or its submissions', else None."""
    for error in bots.detail_errors:
        if error.startswith(f"{case_alias}: "):
            return error
    for report in subs.bots:
        if report.intake_bot_id == case_alias and report.action == "failed":
            return report.error or "failed without a message"
    return None


def other_bots_wrong(
    box: Sandbox, target: str, stored: Stored, subs: SubmissionsReport
) -> list[str]:
    """The bots other than the target that did not complete as the sandbox has them."""
    others = [b for b in box.bot_ids() if b != target]
    truth = {b: {s["id"]: served_facts(s, b) for s in box.truth_submissions(b)} for b in others}
    names = {b["id"]: b["name"] for b in box.truth_bots()}
    actions = {report.intake_bot_id: report.action for report in subs.bots}
    return [
        b
        for b in others
        if actions.get(b) != "synced"
        or stored.submissions.get(b, {}) != truth[b]
        or stored.bots.get(b) != names[b]
        or stored.answers.get(b, set())
        != {k for sid, f in truth[b].items() for k in answer_keys(sid, f[4])}
    ]


def check_target(
    case: Case,
    server: HostileServer,
    stored: Stored,
    subs: SubmissionsReport,
    failure: str | None,
    api_key: str,
    ledger: Ledger,
) -> None:
    """What was stored of the target is what was served (all of it, unless it failed)."""
    alias = server.alias
    actions = {report.intake_bot_id: report.action for report in subs.bots}
    target = stored.submissions.get(alias, {})
    if case.fails:
        assert failure is not None, f"{case.name}: the target did not fail"
        for part in case.fails:
            assert part in failure, f"{case.name}: {part!r} not in {failure!r}"
        assert "iozen_live" not in failure and api_key not in failure
        for sid, facts in target.items():
            item = server.served[sid]
            assert facts == served_facts(item, alias), f"{case.name}: {sid!r} not as served"
        ledger.count(CATEGORY, "failed only their bot, named", 1)
        return
    assert failure is None, f"{case.name}: the target failed: {failure}"
    assert actions.get(alias) == "synced"
    served = {sid: served_facts(item, alias) for sid, item in server.served.items()}
    different = {sid for sid in served if target.get(sid) != served[sid]}
    assert set(target) == set(served), f"{case.name}: ids differ"
    example = [(target.get(sid), served[sid]) for sid in sorted(different)[:1]]
    assert not different, f"{case.name}: {len(different)} differ, e.g. {example!r}"
    expected_answers = {k for sid, f in served.items() for k in answer_keys(sid, f[4])}
    assert stored.answers.get(alias, set()) == expected_answers, f"{case.name}: answers differ"
    assert server.bot is not None
    # A bot's null name is read as "" (docs/decisions.md, part 2, "Client").
    assert stored.bots.get(alias) == (server.bot["name"] or ""), f"{case.name}: bot name differs"
    schema = server.bot.get("schema")
    if isinstance(schema, dict):
        names_served = [f["name"] for f in schema["fields"]]
        assert stored.fields.get(alias) == names_served, f"{case.name}: schema differs"
    ledger.count(CATEGORY, "stored faithfully", 1)


def run_case(case: Case, seed: int, tmp_path: Path, ledger: Ledger) -> None:
    box = Sandbox(SandboxConfig(seed=seed, rate_limit=UNLIMITED, bots=3, submissions_per_bot=10))
    for bot_id in box.bot_ids():
        box.generate_submissions(bot_id, max(0, 10 - len(box.submission_ids(bot_id))))
    # The data directory sits two levels down, so a path that climbs out of it lands in a
    # directory this test watches.
    data_dir = tmp_path / "jail" / "data"
    data_dir.mkdir(parents=True)
    ledger.watch(box.api_key, data_dir)
    neighbours = set(tmp_path.parent.iterdir())
    before = set(tmp_path.rglob("*"))
    server = HostileServer(box, case, seed, outside=tmp_path / "outside")
    alias = server.alias

    work = Workspace(data_dir)
    bots, subs = work.sync(fake_time_client(box, transport=server.transport))
    load_warehouse(work.paths)
    stored = Stored.read(work.paths)
    failure = failure_of(alias, bots, subs)
    errors = [*bots.detail_errors, *(b.error for b in subs.bots if b.error)]
    ledger.said(errors)
    assert case.bot_id or case.bot or server.edited, "the case edited nothing"

    # Every other bot completed and is stored as the sandbox has it.
    wrong = other_bots_wrong(box, server.real, stored, subs)
    ledger.count(CATEGORY, "other bots wrong", len(wrong))
    outside = files_outside(tmp_path, data_dir, before) + sorted(
        set(tmp_path.parent.iterdir()) - neighbours
    )
    ledger.count(CATEGORY, "files outside the data dir", len(outside))
    assert not wrong, f"{case.name}: other bots wrong: {wrong} ({errors})"
    assert not outside, f"{case.name}: written outside the data dir: {outside[:3]}"

    check_target(case, server, stored, subs, failure, box.api_key, ledger)


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_hostile_answers_are_stored_as_served_or_fail_only_their_bot(
    case: Case, tmp_path: Path, ledger: Ledger, long_run: bool
) -> None:
    for seed in range(iterations(1, 4, long_run=long_run)):
        ledger.count(CATEGORY, "hostile cases", 1)
        root = tmp_path / f"seed{seed}"
        root.mkdir()
        run_case(case, seed, root, ledger)
