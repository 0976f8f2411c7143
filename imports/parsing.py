"""CSV files to validated coupon records: no Django, no database.

A file is read as a stream (constant memory, whatever its size). Problems with the
file as a whole (empty, binary, undecodable in the chosen encoding, no code column,
unreadable CSV) raise ``FileProblem`` with one message a manager understands; problems
with one row become an ``InvalidRow`` with its row number and reason, and the rest of
the file goes on. Duplicates are not judged here: inside the file and against every
pool they are the database's business (see the import service).
"""

from __future__ import annotations

import codecs
import csv
import datetime
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

MAX_CODE_LENGTH = 64  # the coupon code column (pools.patterns.MAX_CODE_LENGTH)
MAX_CUSTOMER_LENGTH = 128
DELIMITERS = {",": "Comma (,)", ";": "Semicolon (;)", "\t": "Tab", "|": "Pipe (|)"}
ENCODINGS = {
    # utf-8-sig reads UTF-8 with or without a byte order mark
    "utf-8": ("utf-8-sig", "UTF-8 (with or without BOM)"),
    "windows-1252": ("cp1252", "Windows-1252"),
    "latin-1": ("latin-1", "Latin-1 (ISO-8859-1)"),
}
SNIFF_BYTES = 64 * 1024
MAX_LINE = 100_000  # characters: a longer line is a broken file, not a row of coupons
csv.field_size_limit(MAX_LINE)
# A header cell that names the code column in other words.
CODE_HEADERS = {"code", "codes", "coupon", "coupons", "coupon code", "coupon_code", "voucher", "voucher code",
                "promo code", "promo_code"}


@dataclass(frozen=True)
class Field:
    name: str
    required: bool
    description: str


FIELDS = (
    Field("code", True, f"The coupon code, at most {MAX_CODE_LENGTH} characters; spaces around it are trimmed."),
    Field("customer", False, "A customer ID: the coupon is imported as claimed by that customer."),
    Field("expires_at", False, "Expiration date, like 2030-12-31 or 2030-12-31T23:59:00+01:00, for rows with a customer."),
)
FIELD_NAMES = tuple(f.name for f in FIELDS)


class FileProblem(ValueError):
    """The file cannot be imported at all; nothing of it may be imported."""


@dataclass(frozen=True)
class Options:
    delimiter: str = ","
    has_header: bool = True
    encoding: str = "utf-8"
    # field name -> 0-based column; None: from the header (by name), else code = column 0
    mapping: dict[str, int] | None = None


class Record(NamedTuple):  # a tuple: millions of them are made per import
    row: int
    code: str
    customer: str | None = None
    expires_at: datetime.datetime | None = None


class InvalidRow(NamedTuple):
    row: int
    reason: str
    cells: tuple[str, ...] | list[str] = ()


def check_head(head: bytes) -> None:
    """Refuse what is no CSV at all, from the file's first bytes."""
    if not head.strip(b" \t\r\n\xef\xbb\xbf"):
        raise FileProblem("The file is empty.")
    if b"\x00" in head:
        raise FileProblem("This is not a CSV text file (it contains binary data).")


def sniff(head: bytes, encoding: str = "utf-8") -> Options:
    """Guess the delimiter and whether the first row is a header, for the configure step."""
    check_head(head)
    text = _decode_sample(head, encoding)
    lines = [line for line in text.splitlines() if line.strip()][:50]
    sample = "\n".join(lines)
    try:
        delimiter = csv.Sniffer().sniff(sample, delimiters="".join(DELIMITERS)).delimiter
    except csv.Error:
        delimiter = ","
    first = next(csv.reader([lines[0]], delimiter=delimiter)) if lines else []
    # A header names a field; a file of several columns may have other titles (then the
    # configure step says there is no code column). A plain list of codes has none.
    has_header = any(cell.strip().lower() in FIELD_NAMES or cell.strip().lower() in CODE_HEADERS for cell in first)
    if not has_header and len(first) > 1 and len(lines) > 1:
        try:
            has_header = csv.Sniffer().has_header(sample)
        except csv.Error:
            pass
    return Options(delimiter=delimiter, has_header=has_header, encoding=encoding)


def _decode_sample(head: bytes, encoding: str) -> str:
    python_codec = _codec(encoding)
    decoder = codecs.getincrementaldecoder(python_codec)(errors="strict")
    try:
        return decoder.decode(head, final=False)  # a cut-off last character is fine here
    except UnicodeDecodeError as exc:
        raise _decode_problem(exc, encoding) from None


def _codec(encoding: str) -> str:
    try:
        return ENCODINGS[encoding][0]
    except KeyError:
        raise FileProblem(f"Unknown encoding {encoding!r}; choose one of {', '.join(ENCODINGS)}.") from None


def _decode_problem(exc: UnicodeDecodeError, encoding: str) -> FileProblem:
    bad = exc.object[exc.start : exc.start + 1].hex()
    return FileProblem(
        f"The file is not valid {ENCODINGS[encoding][1]}: byte 0x{bad} at position {exc.start:,} "
        "cannot be read. Choose the file's encoding (for example Windows-1252) and try again."
    )


class _BoundedLines:
    """The lines of a text stream, refusing one longer than ``MAX_LINE`` characters:
    the csv module would otherwise hold a whole line (a 1 GB file without a newline)
    in memory before it could say the line is too long."""

    def __init__(self, text: io.TextIOBase):
        self.text, self.number = text, 0

    def __iter__(self):
        return self

    def __next__(self) -> str:
        line = self.text.readline(MAX_LINE + 1)
        if not line:
            raise StopIteration
        self.number += 1
        if len(line) > MAX_LINE:
            raise FileProblem(
                f"Line {self.number:,} is longer than {MAX_LINE:,} characters: this is not a file of coupon codes "
                "(or its line breaks are missing)."
            )
        return line


def read_records(raw: io.BufferedIOBase, options: Options) -> Iterator[Record | InvalidRow]:
    """Every data row of the file, as a Record or an InvalidRow; blank lines are skipped.

    ``raw`` is the file opened in binary mode; rows are numbered as a spreadsheet shows
    them (the header, if any, is row 1).
    """
    if options.mapping is not None and "code" not in options.mapping:
        raise FileProblem("Choose which column holds the code.")
    if options.delimiter not in DELIMITERS:
        raise FileProblem(f"Choose a delimiter: {', '.join(DELIMITERS.values())}.")
    text = io.TextIOWrapper(raw, encoding=_codec(options.encoding), errors="strict", newline="")
    reader = csv.reader(_BoundedLines(text), delimiter=options.delimiter)
    mapping = options.mapping or {"code": 0}
    header_seen = not options.has_header
    data_rows = 0
    # The common file (the code column alone matters) takes a short path: millions of rows.
    code_only, code_at, control = len(mapping) == 1, mapping["code"], _CONTROL.search
    try:
        for row_number, cells in enumerate(reader, start=1):
            if not "".join(cells).strip():
                continue  # blank line
            if not header_seen:  # the first non-blank row
                header_seen = True
                mapping = options.mapping or _mapping_from_header(cells)
                code_only, code_at = len(mapping) == 1, mapping["code"]
                continue
            data_rows += 1
            if code_only and code_at < len(cells):
                code = cells[code_at].strip()
                if code and len(code) <= MAX_CODE_LENGTH and code[0] != "'" and not control(code):
                    yield Record(row_number, code)
                    continue
            yield _record(row_number, cells, mapping)
    except UnicodeDecodeError as exc:
        raise _decode_problem(exc, options.encoding) from None
    except csv.Error as exc:
        raise FileProblem(f"The file cannot be read as CSV near row {reader.line_num:,}: {exc}.") from None
    if data_rows == 0:
        raise FileProblem(
            "The file has a header row but no coupons." if options.has_header and header_seen else "The file is empty."
        )


def header_mapping(cells: list[str]) -> dict[str, int]:
    """The columns a header row names (``code``, ``customer``, ``expires_at``; the code
    column may also be called "Coupon code", "Voucher" and the like)."""
    names = [cell.strip().lower() for cell in cells]
    mapping = {name: names.index(name) for name in FIELD_NAMES if name in names}
    if "code" not in mapping:
        mapping.update({"code": index for index, name in enumerate(names) if name in CODE_HEADERS})
    return mapping


def head_rows(raw: io.BufferedIOBase, options: Options, limit: int) -> list[list[str]]:
    """The first ``limit`` non-blank rows as cells (for the configure step's column names)."""
    check_head(raw.read(SNIFF_BYTES))
    raw.seek(0)
    text = io.TextIOWrapper(raw, encoding=_codec(options.encoding), errors="strict", newline="")
    rows = []
    try:
        for cells in csv.reader(_BoundedLines(text), delimiter=options.delimiter):
            if "".join(cells).strip():
                rows.append(cells)
                if len(rows) >= limit:
                    break
    except UnicodeDecodeError as exc:
        raise _decode_problem(exc, options.encoding) from None
    except csv.Error as exc:
        raise FileProblem(f"The file cannot be read as CSV: {exc}.") from None
    finally:
        text.detach()  # leave ``raw`` open for the caller
    return rows


def _mapping_from_header(cells: list[str]) -> dict[str, int]:
    mapping = header_mapping(cells)
    if "code" not in mapping:
        shown = ", ".join(f'"{cell}"' for cell in cells[:8]) or "nothing"
        raise FileProblem(f"The file has no code column: its header has {shown}. Name the column \"code\", "
                          "or turn off \"header row\" and choose the column.")
    return mapping


def _cell(cells: list[str], index: int | None) -> str:
    if index is None or index >= len(cells):
        return ""
    return cells[index].strip()


def _record(row: int, cells: list[str], mapping: dict[str, int]) -> Record | InvalidRow:
    code = _unescape(_cell(cells, mapping["code"]))
    reason = _code_problem(code)
    customer = expires_at = None
    if reason is None and "customer" in mapping:
        customer = _unescape(_cell(cells, mapping["customer"])) or None
        reason = _customer_problem(customer)
    if reason is None and "expires_at" in mapping:
        try:
            expires_at = _parse_expiry(_cell(cells, mapping["expires_at"]))
        except ValueError as exc:
            reason = str(exc)
        if reason is None and expires_at is not None and customer is None:
            reason = ("An expiration date needs a customer: a coupon that is not claimed yet "
                      "gets its expiration date when it is claimed.")
    if reason is not None:
        return InvalidRow(row, reason, cells)
    return Record(row, code, customer, expires_at)


_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def _control_character(text: str) -> str | None:
    found = _CONTROL.search(text)
    return f"U+{ord(found.group()):04X}" if found else None


def _unescape(value: str) -> str:
    """Undo the spreadsheet-formula escape of our own CSV downloads ("'=ABC" -> "=ABC"),
    so a downloaded file of rejected rows can be imported again as it is."""
    return value[1:] if len(value) > 1 and value[0] == "'" and value[1] in "=+-@" else value


def _code_problem(code: str) -> str | None:
    if not code:
        return "The code is empty."
    if len(code) > MAX_CODE_LENGTH:
        return f"The code is {len(code)} characters long; codes can be at most {MAX_CODE_LENGTH}."
    if control := _control_character(code):
        return f"The code contains a control character ({control})."
    return None


def _customer_problem(customer: str | None) -> str | None:
    if customer is None:
        return None
    if len(customer) > MAX_CUSTOMER_LENGTH:
        return f"The customer ID is {len(customer)} characters long; at most {MAX_CUSTOMER_LENGTH}."
    if control := _control_character(customer):
        return f"The customer ID contains a control character ({control})."
    return None


def _parse_expiry(text: str) -> datetime.datetime | None:
    """``YYYY-MM-DD`` (the end of that day, UTC) or an ISO 8601 date-time, in the future
    and before 2200 (a later year cannot be stored in every time zone)."""
    if not text:
        return None
    try:
        if len(text) == 10:
            day = datetime.date.fromisoformat(text)
            moment = datetime.datetime.combine(day, datetime.time(23, 59, 59), tzinfo=datetime.UTC)
        else:
            moment = datetime.datetime.fromisoformat(text)
            moment = (moment if moment.tzinfo else moment.replace(tzinfo=datetime.UTC)).astimezone(datetime.UTC)
    except OverflowError:
        moment = datetime.datetime.max.replace(tzinfo=datetime.UTC)  # beyond what can be stored
    except ValueError:
        raise ValueError(f'The expiration date "{text[:40]}" is not a date like 2030-12-31.') from None
    if moment.year >= 2200:
        raise ValueError(f'The expiration date "{text[:40]}" is too far away (before 2200, please).')
    if moment <= datetime.datetime.now(datetime.UTC):
        raise ValueError(f'The expiration date "{text[:40]}" is in the past.')
    return moment
