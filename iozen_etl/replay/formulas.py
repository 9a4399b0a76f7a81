"""Cells a spreadsheet would run as a formula: the escape the rejects CSV writes, and its inverse.

People open the rejects CSV in a spreadsheet, and its cells come straight from an input file
that anyone may have written: ``=HYPERLINK(...)`` or ``=cmd|' /C calc'!A0`` would run there.
Following OWASP's CSV-injection guidance, a cell starting with ``=``, ``+``, ``-``, ``@``, tab or
carriage return is written with a ``'`` in front, which spreadsheets show as text.

A plain number (``-5``, ``+3.5``, ``-1e3``) is left alone: a spreadsheet reads it as that number
and nothing more, and escaping every negative amount would bury the cells that matter. A phone
number such as ``+44 20 7946 0958`` is escaped: it is not a plain number, a spreadsheet would
evaluate it (``+1-555-0100`` shows as -654), and no rule letting phone numbers through can tell
them from ``+1-2+cmd|...``.

A fixed rejects file is replayed as it is, so the escape comes off exactly: a cell that already
starts with ``'`` is escaped too, which makes "one ``'`` followed by a character that is escaped"
a mark only the escape can leave.
"""

from __future__ import annotations

import re

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
ESCAPE = "'"
_ESCAPED_STARTS = (*FORMULA_STARTS, ESCAPE)
_PLAIN_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


def escape_cell(cell: str) -> str:
    """The cell as the rejects CSV writes it: with a ``'`` in front if it could run."""
    if cell.startswith(_ESCAPED_STARTS) and not _PLAIN_NUMBER.fullmatch(cell):
        return ESCAPE + cell
    return cell


def unescape_cell(cell: str) -> str:
    """The cell ``escape_cell`` was given, from what it wrote."""
    if cell.startswith(ESCAPE) and cell[1:].startswith(_ESCAPED_STARTS):
        return cell[1:]
    return cell
