"""Deterministic seed data: bot schemas covering every field type, and realistic answers.

Answers are drawn from per-field pools of pre-serialised JSON fragments, so making a submission
is a handful of random picks and one bytes join (a million take seconds, not minutes).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any

from iozen_etl.sandbox.timefmt import parse_iso_ms

SEED_START_MS = parse_iso_ms("2026-02-25T00:00:00.000Z")  # API v1 launch
SEED_END_MS = parse_iso_ms("2026-06-01T00:00:00.000Z")  # the frozen clock starts here

FIELD_TYPES = (
    "short_text",
    "long_text",
    "email",
    "phone",
    "url",
    "number",
    "date",
    "boolean",
    "select",
    "multi_select",
    "file",
    "hidden",
)

NAMES = (
    "Jane Doe",
    "José Álvarez",
    "Zoë Ñúñez-O'Brien",
    "李小龙",
    "山田 太郎",
    "Анна Петрова",
    "محمد علي",
    "שרה כהן",
    "Κώστας Παπαδόπουλος",
    "Nguyễn Văn An",
    "김민준",
    "राहुल शर्मा",
    "Ólafur Ragnarsson",
    "Siobhán Ní Bhriain",
    "Łukasz Wiśniewski",
    "Ayşe Yılmaz",
    "สมชาย ใจดี",
    "Ana 🌸 Lima",
    "Dr. Amara Okafor",
    "François Müller",
    "Kwame Mensah",
    "Mei-Ling Chen",
    "Björk Guðmundsdóttir",
    "Søren Kierkegaard",
)
EMAIL_LOCALS = (
    "jane.doe",
    "jose.alvarez",
    "zoe+intake",
    "li.xiaolong",
    "taro.yamada",
    "anna_petrova",
    "m.ali",
    "sarah.cohen",
    "kostas",
    "an.nguyen",
    "minjun.kim",
    "rahul.sharma99",
    "o.ragnarsson",
    "ana.lima",
)
EMAIL_DOMAINS = ("example.com", "example.org", "mail.example.net", "acme.test", "empresa.example")
COMPANIES = (
    "Acme Corp",
    "Globex GmbH",
    "Initech",
    "株式会社サンプル",
    "ООО «Ромашка»",
    "Café Olé S.A.",
    "Umbrella Ltd.",
    "Stark & Sons",
    "Pied Piper 🎶",
    "شركة المثال",
)
SENTENCES = (
    "We need to onboard our whole team before the end of the quarter.",
    "Please call me back in the afternoon, mornings are busy.",
    "Necesitamos una factura con nuestro número fiscal.",
    "Die Lieferung kam beschädigt an, bitte um Ersatz.",
    "配送先の住所を変更したいです。",
    "Мы хотели бы обсудить корпоративный тариф.",
    "The app crashes when I upload a photo larger than 10 MB 😢",
    "Looking forward to the event! 🎉🎉",
    'Line one of the answer.\nLine two, with a tab\there and "quotes".',
    "N/A",
    "",
)
SUMMARIES = (
    "New enterprise customer requesting priority onboarding.",
    "Customer reports a damaged delivery and asks for a replacement.",
    "Lead interested in the corporate plan; wants a call back.",
    "Cliente solicita factura con datos fiscales.",
    "Bug report about photo uploads failing over 10 MB.",
    "Registrant with dietary needs; arriving a day early.",
    "Candidate with 5 years of experience, available immediately.",
)
CITIES = ("Lisbon", "Zürich", "São Paulo", "東京", "Москва", "القاهرة", "Reykjavík", "Kraków")


@dataclass(frozen=True)
class FieldTemplate:
    name: str
    label: str
    type: str | None  # None for a content block
    required: bool = False
    options: tuple[str, ...] = ()
    content_type: str | None = None
    body: str | None = None
    extra: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class BotTemplate:
    name: str
    description: str
    items: tuple[FieldTemplate, ...]


def _f(name: str, label: str, type_: str, required: bool = False, *options: str) -> FieldTemplate:
    return FieldTemplate(name, label, type_, required, tuple(options))


def _c(name: str, label: str | None, content_type: str, body: str) -> FieldTemplate:
    return FieldTemplate(name, label or "", None, content_type=content_type, body=body)


TEMPLATES: tuple[BotTemplate, ...] = (
    BotTemplate(
        "Customer Onboarding",
        "Collects new customer information for onboarding",
        (
            _c("welcome", "Welcome", "plain", "Welcome! This takes about two minutes."),
            _f("full_name", "Full Name", "short_text", True),
            _f("email", "Email", "email", True),
            _f("company", "Company", "short_text"),
            _f("phone", "Phone", "phone"),
            _f("website", "Website", "url"),
            _f("team_size", "Team size", "number"),
            _f("start_date", "Preferred start date", "date"),
            _f("priority", "Priority", "select", False, "low", "medium", "high"),
            _f("products", "Products", "multi_select", False, "crm", "billing", "support", "api"),
            _f("consent", "I agree to the terms", "boolean", True),
            _c(
                "next_steps",
                "Next steps",
                "ai_generated",
                "Thank {{full_name}} and explain next steps.",
            ),
            _f("notes", "Anything else?", "long_text"),
            _f("contract", "Signed contract", "file"),
            _f("utm_source", "Campaign", "hidden"),
        ),
    ),
    BotTemplate(
        "Support Ticket",
        "Triage incoming support requests",
        (
            _f("full_name", "Your name", "short_text", True),
            _f("email", "Email", "email", True),
            _f("order_number", "Order number", "short_text"),
            _f("category", "Category", "select", True, "billing", "bug", "delivery", "other"),
            _c("intro", None, "rich", "<p>Tell us <strong>what happened</strong>.</p>"),
            _f("description", "What happened?", "long_text", True),
            _f("attachments", "Screenshots", "file"),
            _f("urgent", "Is this urgent?", "boolean"),
        ),
    ),
    BotTemplate(
        "Event Registration",
        "Sign-ups for the annual meetup",
        (
            _f("full_name", "Full Name", "short_text", True),
            _f("email", "Email", "email", True),
            _f("arrival_date", "Arrival date", "date", True),
            _f("guests", "Number of guests", "number"),
            _f("dietary", "Dietary needs", "multi_select", False, "vegetarian", "vegan", "halal"),
            _c("venue", "Venue", "editor", '{"type":"doc","content":[]}'),
            _f("newsletter", "Subscribe to the newsletter", "boolean"),
            _f("comments", "Comments", "long_text"),
        ),
    ),
    BotTemplate(
        "Job Application",
        "Applications for open positions",
        (
            _f("full_name", "Full Name", "short_text", True),
            _f("email", "Email", "email", True),
            _f("phone", "Phone", "phone", True),
            _f("portfolio", "Portfolio URL", "url"),
            _f("years_experience", "Years of experience", "number", True),
            _f("role", "Role", "select", True, "engineer", "designer", "support", "sales"),
            _f("cv", "CV", "file", True),
            _f("city", "City", "short_text"),
            _f("cover_letter", "Cover letter", "long_text"),
            _f("referrer", "Referrer", "hidden"),
        ),
    ),
    BotTemplate(
        "Real Estate Inquiry",
        "Leads for listings",
        (
            _f("full_name", "Name", "short_text", True),
            _f("email", "Email", "email"),
            _f("phone", "Phone", "phone"),
            _f("budget", "Budget (EUR)", "number"),
            _f("move_in", "Move-in date", "date"),
            _f("rooms", "Rooms", "select", False, "1", "2", "3", "4+"),
            _f("pets", "Pets?", "boolean"),
            _c("disclaimer", "Disclaimer", "plain", "Prices exclude fees."),
        ),
    ),
)


def _emails(rng: random.Random) -> list[Any]:
    return [f"{rng.choice(EMAIL_LOCALS)}@{rng.choice(EMAIL_DOMAINS)}" for _ in range(24)]


def _long_texts(rng: random.Random) -> list[Any]:
    texts: list[Any] = [rng.choice(SENTENCES) for _ in range(20)]
    texts += [
        " ".join(rng.choice(SENTENCES[:8]) for _ in range(rng.randint(3, 8))) for _ in range(6)
    ]
    texts.append("Very long answer. " * 120)  # about 2 kB: long answers exist
    return texts


def value_pool(item: FieldTemplate, rng: random.Random) -> list[Any]:
    """Plausible answers for one field: the pool submissions draw from."""
    kind = item.type
    if kind == "short_text":
        if "name" in item.name:
            return list(NAMES)
        if "company" in item.name:
            return list(COMPANIES)
        if "city" in item.name:
            return list(CITIES)
        return [f"#{rng.randint(10000, 99999)}" for _ in range(20)] + ["n/a", "—"]
    if kind == "long_text":
        return _long_texts(rng)
    if kind == "email":
        return _emails(rng)
    if kind == "phone":
        return [
            f"+{rng.choice((1, 44, 49, 351, 81, 55))} {rng.randint(100, 999)} "
            f"{rng.randint(100, 999)} {rng.randint(1000, 9999)}"
            for _ in range(20)
        ]
    if kind == "url":
        return [f"https://{rng.choice(EMAIL_DOMAINS)}/p/{rng.randint(1, 999)}" for _ in range(16)]
    if kind == "number":
        ints: list[Any] = [rng.randint(0, 250) for _ in range(20)]
        return [*ints, 0, -3, 1.5, 12.75, 100000, 1_250_000.5]
    if kind == "date":
        return [f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}" for _ in range(30)]
    if kind == "boolean":
        return [True, False, True]
    if kind == "select":
        return list(item.options)
    if kind == "multi_select":
        return [
            sorted(rng.sample(item.options, rng.randint(1, len(item.options)))) for _ in range(12)
        ] + [[]]
    if kind == "file":
        files = (
            "passport.pdf",
            "screenshot.png",
            "cv_2026.docx",
            "contrato firmado.pdf",
            "写真.jpg",
        )
        return [rng.sample(files, rng.randint(1, 3)) for _ in range(12)]
    if kind == "hidden":
        return ["newsletter", "google", "partner-42", "linkedin", "utm=spring_sale"]
    return ["?"]


@dataclass(frozen=True)
class AnswerPool:
    """Pre-serialised ``"name":value`` fragments for one field, with their file counts."""

    name: str
    required: bool
    fragments: tuple[bytes, ...]
    file_counts: tuple[int, ...]
    null_fragment: bytes


def answer_pool(item: FieldTemplate, rng: random.Random) -> AnswerPool:
    values = value_pool(item, rng)
    key = json.dumps(item.name, ensure_ascii=False)
    fragments = tuple(
        (key + ":" + json.dumps(value, ensure_ascii=False, separators=(",", ":"))).encode()
        for value in values
    )
    counts = tuple(
        len(value) if item.type == "file" and isinstance(value, list) else 0 for value in values
    )
    return AnswerPool(item.name, item.required, fragments, counts, (key + ":null").encode())


def schema_item(item: FieldTemplate, index: int) -> dict[str, Any]:
    """A schema entry in the SI/CL ("fields") shape."""
    if item.type is None:
        return {
            "id": f"cb_{index}",
            "kind": "content",
            "name": item.name,
            "label": item.label or None,
            "content_type": item.content_type,
            "body": item.body,
        }
    entry: dict[str, Any] = {
        "id": f"field_{index}",
        "kind": "field",
        "name": item.name,
        "label": item.label,
        "type": item.type,
        "required": item.required,
    }
    if item.options:
        entry["options"] = list(item.options)
    if item.type in ("short_text", "email"):
        entry["placeholder"] = f"Your {item.label.lower()}"  # an unknown key clients must keep
    return entry


def skewed_counts(rng: random.Random, bots: int, mean: int) -> list[int]:
    """Split bots*mean submissions over the bots: a few large bots, many small, some empty."""
    if bots == 0:
        return []
    weights = [0.0 if rng.random() < 0.05 else rng.lognormvariate(0.0, 1.1) for _ in range(bots)]
    total_weight = sum(weights) or 1.0
    total = bots * mean
    counts = [int(total * weight / total_weight) for weight in weights]
    shortfall = total - sum(counts)
    positive = [i for i, weight in enumerate(weights) if weight > 0] or [0]
    for step in range(shortfall):
        counts[positive[step % len(positive)]] += 1
    return counts
