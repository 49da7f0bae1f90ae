"""Every JSON edge case (NaN, Infinity, huge numbers, deep nesting, wrong types, not JSON at all) sent to
every state-changing endpoint of the real server, with and without valid tokens: never a 5xx, never a
traceback in the server's log, nothing stored."""

from __future__ import annotations

import itertools
import json

import httpx
import pytest

from readerstudy_support import COORD, Server, make_hand_study

pytest.importorskip("fastapi")

VALID = {
    "image": "KEY",
    "answer": "melanoma",
    "confidence": 3,
    "submission_id": "sid-sweep0001",
    "client_ms": 900,
}


def _bodies() -> list[tuple[str, bytes, str | None]]:
    """(name, raw body, content type) of every edge case."""
    full = json.dumps(VALID)
    cases: list[tuple[str, str | bytes]] = [
        ("client_ms NaN", '{"client_ms": NaN}'),
        ("client_ms Infinity", '{"client_ms": Infinity}'),
        ("client_ms -Infinity", '{"client_ms": -Infinity}'),
        ("full, client_ms NaN", full.replace("900", "NaN")),
        ("full, client_ms -Infinity", full.replace("900", "-Infinity")),
        ("full, confidence NaN", full.replace('"confidence": 3', '"confidence": NaN')),
        ("full, confidence Infinity", full.replace('"confidence": 3', '"confidence": Infinity')),
        ("client_ms 1e999", full.replace("900", "1e999")),
        ("client_ms 1e308", full.replace("900", "1e308")),
        ("client_ms -0.0", full.replace("900", "-0.0")),
        ("confidence 10**30", full.replace('"confidence": 3', '"confidence": ' + "1" + "0" * 30)),
        ("confidence 4000 digits", full.replace('"confidence": 3', '"confidence": ' + "9" * 4000)),
        ("confidence 5000 digits", full.replace('"confidence": 3', '"confidence": ' + "9" * 5000)),
        ("confidence 3.5", full.replace('"confidence": 3', '"confidence": 3.5')),
        ("confidence true", full.replace('"confidence": 3', '"confidence": true')),
        ("confidence string", full.replace('"confidence": 3', '"confidence": "3"')),
        ("confidence list", full.replace('"confidence": 3', '"confidence": [3]')),
        ("answer number", full.replace('"melanoma"', "5")),
        ("answer object", full.replace('"melanoma"', '{"$ne": null}')),
        ("image list", full.replace('"KEY"', "[]")),
        ("submission_id null", full.replace('"sid-sweep0001"', "null")),
        ("name NaN / years NaN", '{"name": NaN, "years_experience": NaN}'),
        ("years Infinity", '{"name": "Dr X", "years_experience": Infinity}'),
        ("years 1e400", '{"name": "Dr X", "years_experience": 1e400}'),
        ("years huge int", '{"name": "Dr X", "years_experience": ' + "9" * 4000 + "}"),
        ("name list", '{"name": ["Dr X"]}'),
        ("name 10 kB", json.dumps({"name": "x" * 10_000})),
        ("deep lists", "[" * 100_000 + "]" * 100_000),
        ("deep objects", '{"a":' * 5000 + "1" + "}" * 5000),
        ("17 levels", '{"image":' + "[" * 17 + "]" * 17 + "}"),
        ("top-level list", "[]"),
        ("top-level null", "null"),
        ("top-level string", '"melanoma"'),
        ("top-level number", "NaN"),
        ("empty", ""),
        ("truncated", full[:-5]),
        ("not utf-8", b"\xff\xfe\x00{"),
        ("BOM", b"\xef\xbb\xbf" + full.encode()),
        ("duplicate keys", full[:-1] + ', "answer": "naevus"}'),
        ("extra field", full[:-1] + ', "reader_id": 2}'),
        ("200 kB", json.dumps({"name": "x" * 200_000})),
    ]
    out: list[tuple[str, bytes, str | None]] = []
    for name, text in cases:
        raw = text if isinstance(text, bytes) else text.encode()
        out.append((name, raw, "application/json"))
    for name, raw, _ in out[:6] + out[27:29]:  # the worst ones again without a content type, and as text
        out.append((f"{name} (no content type)", raw, None))
        out.append((f"{name} (text/plain)", raw, "text/plain"))
    out.append(
        ("form with NaN years", b"name=X&years_experience=nan&csrf=x", "application/x-www-form-urlencoded")
    )
    return out


def test_no_5xx_for_any_json_edge_case(isic2019_dir, tmp_path):
    study = make_hand_study(isic2019_dir, tmp_path, n_mel=1, n_nv=1, n_adv=0)
    log = tmp_path / "server.log"
    with Server(study, log=log) as server:
        auth = {"Authorization": f"Bearer {COORD}"}
        with httpx.Client(base_url=server.base, timeout=30) as c:
            made = c.post("/api/coordinator/readers", json={"name": "Dr Sweep"}, headers=auth).json()
            token, rid = made["token"], made["id"]
            key = c.get(f"/api/r/{token}/next").json()["image"]
            fake = "y" * 32
            endpoints = [f"/api/r/{t}/answers" for t in (token, fake, "short")] + [
                f"/r/{token}/consent",
                f"/r/{fake}/consent",
                "/api/coordinator/readers",
                f"/api/coordinator/readers/{rid}/revoke",
                "/api/coordinator/readers/99999999999999999999/revoke",
                "/coordinator/readers",
                f"/coordinator/readers/{rid}/revoke",
                "/coordinator/login",
                "/coordinator/logout",
                "/nowhere",
            ]
            seen: dict[int, int] = {}
            failures = []
            n = 0
            for path, (name, raw, ctype), with_auth in itertools.product(endpoints, _bodies(), (False, True)):
                if "revoke" in path and with_auth:  # keep the reader: the answers must stay refusable
                    continue
                headers = {**(auth if with_auth else {})}
                if ctype:
                    headers["Content-Type"] = ctype
                r = c.post(path, content=raw.replace(b"KEY", key.encode()), headers=headers)
                n += 1
                seen[r.status_code] = seen.get(r.status_code, 0) + 1
                if r.status_code >= 500:
                    failures.append(f"{r.status_code} POST {path} [{name}] auth={with_auth}: {r.text[:200]}")
                elif path.startswith("/api/") and r.status_code >= 400:
                    detail = r.json().get("detail")
                    if not isinstance(detail, str) or len(detail) > 600:
                        failures.append(f"POST {path} [{name}]: detail not one short line: {detail!r:.200}")
            # every rejected non-finite number is a 422 before the token is even looked at
            for t in (token, fake):
                r = c.post(
                    f"/api/r/{t}/answers",
                    content=b'{"client_ms": NaN}',
                    headers={"Content-Type": "application/json"},
                )
                assert r.status_code == 422 and "finite" in r.json()["detail"]
            state = c.get(f"/api/r/{token}/state").json()
            progress = c.get("/api/coordinator/progress", headers=auth).json()
    text = log.read_text()
    print(f"{n} requests; status counts {dict(sorted(seen.items()))}")
    assert not failures, failures[:10]
    assert "Traceback" not in text and "Exception" not in text, text[-3000:]
    # valid-looking bodies of the sweep were answers to the one shown image: at most that one stored
    assert state["answered"] <= 1
    assert [p["name"] for p in progress][:1] == ["Dr Sweep"]
