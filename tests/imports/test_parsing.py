"""imports.parsing on its own: a table of nasty files, each with what it must give."""

import datetime
import io

import pytest

from imports.parsing import FileProblem, InvalidRow, Options, Record, check_head, read_records, sniff


def parse(data: bytes, **options):
    records = list(read_records(io.BytesIO(data), Options(**options)))
    good = [r for r in records if isinstance(r, Record)]
    bad = [r for r in records if isinstance(r, InvalidRow)]
    return good, bad


def codes(data: bytes, **options):
    good, _ = parse(data, **options)
    return [r.code for r in good]


# name, file bytes, options, expected codes, expected invalid rows (row, reason fragment)
NASTY_FILES = [
    ("plain with header", b"code\nA1\nA2\n", {}, ["A1", "A2"], []),
    ("no header", b"A1\nA2\n", {"has_header": False}, ["A1", "A2"], []),
    ("utf-8 BOM", "\ufeffcode\nÄ1\n".encode(), {}, ["Ä1"], []),
    ("CRLF line ends", b"code\r\nA1\r\nA2\r\n", {}, ["A1", "A2"], []),
    ("no final newline", b"code\nA1\nA2", {}, ["A1", "A2"], []),
    ("quoted fields with the delimiter inside", b'code,customer\n"A,1",C1\n"B""2",C2\n', {}, ["A,1", 'B"2'], []),
    ("semicolons", b"code;customer\nA1;C1\n", {"delimiter": ";"}, ["A1"], []),
    ("tabs", b"customer\tcode\nC1\tA1\n", {"delimiter": "\t"}, ["A1"], []),
    ("blank lines anywhere", b"code\n\nA1\n  \n\nA2\n\n", {}, ["A1", "A2"], []),
    ("whitespace around codes", b"code\n  A1 \n\tA2\t\n", {}, ["A1", "A2"], []),
    ("duplicates in the file are kept for the database to judge", b"code\nA1\nA1\n", {}, ["A1", "A1"], []),
    ("windows-1252 text", "code\nCAFÉ-1\nPREIS-€\n".encode("cp1252"), {"encoding": "windows-1252"},
     ["CAFÉ-1", "PREIS-€"], []),
    ("latin-1 text", "code\nNIÑO-1\n".encode("latin-1"), {"encoding": "latin-1"}, ["NIÑO-1"], []),
    ("header in another case and order", b"Customer,CODE\nC1,A1\n", {}, ["A1"], []),
    ("over-long code", b"code\n" + b"X" * 65 + b"\nOK1\n", {}, ["OK1"], [(2, "65 characters long")]),
    ("code of exactly 64", b"code\n" + b"Y" * 64 + b"\n", {}, ["Y" * 64], []),
    ("control character in a code", b"code\nA\x071\nOK\n", {}, ["OK"], [(2, "control character (U+0007)")]),
    ("empty code with a customer", b"code,customer\n,C1\nA1,C1\n", {}, ["A1"], [(2, "The code is empty")]),
    ("bad expiry date", b"code,customer,expires_at\nA1,C,31/12/2026\nA2,C,2099-12-31\n", {}, ["A2"],
     [(2, 'expiration date "31/12/2026" is not a date')]),
    ("expiry without a customer", b"code,customer,expires_at\nA1,,2099-12-31\nA2,,\n", {}, ["A2"],
     [(2, "An expiration date needs a customer")]),
    ("short row without the mapped column", b"code,customer\nA1\n", {}, ["A1"], []),
    ("expiry in the past", b"code,customer,expires_at\nA1,C,2001-01-01\n", {}, [], [(2, "is in the past")]),
    ("expiry beyond what can be stored", b"code,customer,expires_at\nA1,C,9999-12-31T23:59:59-12:00\n", {}, [],
     [(2, "too far away")]),
    ("our own escaped cells read back", b"code,customer\n'=CMD,'+C1\n'plain\n", {}, ["=CMD", "'plain"], []),
    ("the code column called something else", b"Coupon code\nA1\n", {}, ["A1"], []),
]


@pytest.mark.parametrize("name, data, options, expected, invalid", NASTY_FILES, ids=[f[0] for f in NASTY_FILES])
def test_nasty_files(name, data, options, expected, invalid):
    good, bad = parse(data, **options)
    assert [r.code for r in good] == expected
    assert [(r.row, r.reason) for r in bad] == [(row, r.reason) for (row, _), r in zip(invalid, bad, strict=True)]
    for (row, fragment), record in zip(invalid, bad, strict=True):
        assert record.row == row and fragment in record.reason


@pytest.mark.parametrize("name, data, options, message", [
    ("empty file", b"", {}, "The file is empty."),
    ("only whitespace", b" \r\n\n", {}, "The file is empty."),
    ("header only", b"code,customer\n", {}, "a header row but no coupons"),
    ("no code column", b"name,customer\nA1,C1\n", {}, 'no code column: its header has "name", "customer"'),
    ("invalid utf-8", b"code\nA1\n\xff\xfe\xfaBAD\n", {}, "not valid UTF-8"),
    ("binary data", b"PK\x03\x04\x00\x00\x14\x00code\n", {}, "not a CSV text file"),
    ("unknown encoding", b"code\nA1\n", {"encoding": "klingon"}, "Unknown encoding"),
    ("mapping without code", b"A1\n", {"has_header": False, "mapping": {"customer": 0}}, "which column holds the code"),
    ("a cell of megabytes", b"code\n" + b"x" * (2 * 1024 * 1024) + b"\n", {}, "Line 2 is longer than 100,000 characters"),
    ("no line breaks at all", b"code," + b"x," * 600_000, {}, "Line 1 is longer than 100,000 characters"),
])
def test_files_that_cannot_be_read_fail_with_one_clear_message(name, data, options, message):
    with pytest.raises(FileProblem, match=message):
        if name == "binary data":
            check_head(data)
        list(read_records(io.BytesIO(data), Options(**options)))


def test_rows_are_numbered_as_a_spreadsheet_shows_them():
    good, bad = parse(b"code\n\nA1\n\nBAD\x01\n")
    assert [r.row for r in good] == [3] and [r.row for r in bad] == [5]


def test_customer_and_expiry_are_read():
    good, _ = parse(b"code,customer,expires_at\nA1, C-7 ,2099-12-31\nA2,C-8,2099-06-01T08:00:00+02:00\nA3,,\n")
    assert good[0].customer == "C-7"
    assert good[0].expires_at == datetime.datetime(2099, 12, 31, 23, 59, 59, tzinfo=datetime.UTC)
    assert (good[2].customer, good[2].expires_at) == (None, None)
    assert good[1].expires_at == datetime.datetime(2099, 6, 1, 6, 0, tzinfo=datetime.UTC)


def test_explicit_mapping_without_a_header():
    good, _ = parse(b"C1;A1\nC2;A2\n", has_header=False, delimiter=";", mapping={"code": 1, "customer": 0})
    assert [(r.code, r.customer) for r in good] == [("A1", "C1"), ("A2", "C2")]


@pytest.mark.parametrize("data, delimiter, header", [
    (b"code,customer\nA1,C1\nA2,C2\n", ",", True),
    (b"code;customer\nA1;C1\nA2;C2\n", ";", True),
    (b"A1\tC1\nA2\tC2\n", "\t", False),
    (b"\xef\xbb\xbfCode|Customer\nA1|C1\n", "|", True),
])
def test_sniffing_the_delimiter_and_header(data, delimiter, header):
    options = sniff(data)
    assert (options.delimiter, options.has_header) == (delimiter, header)


def test_sniffing_refuses_the_wrong_encoding_clearly():
    with pytest.raises(FileProblem, match="byte 0xe9 at position 8"):
        sniff("code\ncaf\u00e9\n".encode("cp1252"))


def test_reading_streams_a_large_file_in_constant_memory():
    import tracemalloc

    rows = 200_000
    data = b"code\n" + b"".join(b"CODE-%08d\n" % n for n in range(rows))
    tracemalloc.start()
    count = sum(1 for _ in read_records(io.BytesIO(data), Options()))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert count == rows
    assert peak < 2 * 1024 * 1024  # records are not accumulated
