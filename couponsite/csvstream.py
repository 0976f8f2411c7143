"""CSV for downloads: every streamed CSV of the product (exports, rejected import rows)
writes its lines here, with a BOM for spreadsheets and formulas neutralised (a cell
starting with = + - @ tab or CR gets a leading apostrophe, against CSV injection)."""

from __future__ import annotations

import csv

FORMULA_START = "=+-@\t\r"
BOM = "\ufeff"
# The same test in SQL, for exports written by COPY (a "-" last in a character class).
FORMULA_REGEX = "^[" + FORMULA_START.replace("-", "") + "-]"


def safe_cell(value: str) -> str:
    """Neutralise spreadsheet formulas (CSV injection): a leading = + - @ tab or CR."""
    if value and value[0] in FORMULA_START:
        return "'" + value
    return value


class _Echo:
    def write(self, value):
        return value


class _LineWriter:
    """``writerow`` returns the CSV line as PostgreSQL's COPY writes it: ended by LF, and
    a cell quoted when it holds the delimiter, a quote, a CR or an LF. (Python's writer
    quotes only what its line terminator holds, so it writes CRLF lines here, cut to LF.)"""

    def __init__(self):
        self._writer = csv.writer(_Echo(), lineterminator="\r\n")

    def writerow(self, row) -> str:
        return self._writer.writerow(row)[:-2] + "\n"


def streaming_writer() -> _LineWriter:
    """A CSV writer whose ``writerow`` returns the line, for a streamed response."""
    return _LineWriter()
