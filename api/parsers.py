"""The API's JSON body parser: a clear 4xx for every body no endpoint is built for.

- larger than ``API_MAX_BODY_BYTES``: 413, read no further than the limit;
- nested deeper than ``MAX_DEPTH`` (100,000 brackets would exhaust Python's stack): 400;
- NUL characters in any text or key (PostgreSQL refuses them in text): 400;
- a charset other than UTF-8, -16 or -32 (JSON's own; Python's codecs would also
  decompress ``bz2`` or ``zlib`` past the size limit): 415.
"""

from __future__ import annotations

import codecs
import json

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from .errors import ApiError

MAX_DEPTH = 32
JSON_CODECS = {"utf-8", "utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be"}


class SafeJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        parser_context = parser_context or {}
        encoding = parser_context.get("encoding", settings.DEFAULT_CHARSET)
        try:
            codec = codecs.lookup(encoding).name
        except LookupError:
            codec = None
        if codec not in JSON_CODECS:
            raise ApiError(f"The request body must be UTF-8 JSON; the charset {str(encoding)[:40]!r} is not accepted.",
                           code="unsupported_charset", type="request_error", status_code=415)
        limit = settings.API_MAX_BODY_BYTES
        raw = stream.read(limit + 1) if stream is not None else b""
        if len(raw) > limit:
            raise ApiError(f"The request body is larger than {limit:,} bytes.", code="body_too_large",
                           type="request_error", status_code=413)
        try:
            data = json.loads(codecs.decode(raw, codec), parse_constant=_no_constants)
        except RecursionError:
            raise ParseError(f"The JSON is nested too deeply (at most {MAX_DEPTH} levels).") from None
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {exc}") from None
        _check(data)
        return data


def _no_constants(name):
    raise ValueError(f"{name} is not a JSON number")


def _check(data) -> None:
    """Depth and NUL characters, without recursion."""
    todo = [(data, 1)]
    while todo:
        value, depth = todo.pop()
        if depth > MAX_DEPTH:
            raise ParseError(f"The JSON is nested too deeply (at most {MAX_DEPTH} levels).")
        if isinstance(value, str):
            if "\x00" in value:
                raise ApiError("NUL characters are not allowed in the request.", code="invalid", type="validation_error")
        elif isinstance(value, dict):
            for key, item in value.items():
                todo.append((key, depth))
                todo.append((item, depth + 1))
        elif isinstance(value, list):
            todo.extend((item, depth + 1) for item in value)
