"""Fast conversions between Unix milliseconds, ISO-8601 strings and cuid-like ids.

Seeding a million submissions formats a million timestamps, so this avoids datetime per call.
"""

from __future__ import annotations

import datetime as dt

_B36 = "0123456789abcdefghijklmnopqrstuvwxyz"
_PAIRS = [a + b for a in _B36 for b in _B36]  # 1296 two-digit strings
_TWO = [f"{i:02d}" for i in range(100)]
_THREE = [f"{i:03d}" for i in range(1000)]
_DAY_MS = 86_400_000
_day_cache: dict[int, str] = {}


def iso_ms(ms: int) -> str:
    """``2026-02-22T11:00:00.000Z`` for a Unix time in milliseconds."""
    day, rest = divmod(ms, _DAY_MS)
    date = _day_cache.get(day)
    if date is None:
        date = (dt.date(1970, 1, 1) + dt.timedelta(days=day)).isoformat()
        _day_cache[day] = date
    seconds, millis = divmod(rest, 1000)
    minutes, sec = divmod(seconds, 60)
    hours, minute = divmod(minutes, 60)
    return (
        date + "T" + _TWO[hours] + ":" + _TWO[minute] + ":" + _TWO[sec] + "." + _THREE[millis] + "Z"
    )


def parse_iso_ms(text: str) -> int:
    """Unix milliseconds of an ISO-8601 UTC string (with or without milliseconds)."""
    moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return round(moment.timestamp() * 1000)


def base36(value: int, width: int) -> str:
    """Fixed-width lower-case base 36: lexical order equals numeric order."""
    digits = []
    for _ in range(width):
        value, digit = divmod(value, 36)
        digits.append(_B36[digit])
    return "".join(reversed(digits))


def _b36_4(value: int) -> str:
    high, low = divmod(value % 1_679_616, 1296)
    return _PAIRS[high] + _PAIRS[low]


def cuid(ms: int, seq: int, fingerprint: str, random_bits: int) -> str:
    """A 25-character cuid-v1-shaped id: c + time(8) + counter(4) + fingerprint(4) + random(8).

    Ids made for one owner with rising (ms, seq) sort in creation order, which is what lets a
    bot's submissions be paged by bisecting a sorted id list.
    """
    time_high, time_low = divmod(ms, 1_679_616)
    random_high, random_low = divmod(random_bits, 1_679_616)
    return (
        "c"
        + _b36_4(time_high)
        + _b36_4(time_low)
        + _b36_4(seq)
        + fingerprint
        + _b36_4(random_high)
        + _b36_4(random_low)
    )
