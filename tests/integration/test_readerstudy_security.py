"""Coordinator actions cannot be forged (CSRF tokens, Origin check, sessions instead of the token in the
cookie, login rate limit, logout, Secure cookie over HTTPS or behind a proxy), the coordinator token
survives restarts until rotated, invite links come from the configured public URL only, answer changes
are exported, exports honour the umask."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import stat
import subprocess
import sys

import httpx
import pytest

from readerstudy_support import REPO, Server, cli, coordinator_login, make_hand_study

fastapi = pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from dermadv.readerstudy.app import create_app  # noqa: E402
from dermadv.readerstudy.study import load_study  # noqa: E402

COORD = "coord-token-for-security-tests"
BEARER = {"Authorization": f"Bearer {COORD}"}
FOREIGN = {"Origin": "http://127.0.0.1:9"}  # same site (loopback), another port


@pytest.fixture(scope="module")
def study_dir(isic2019_dir, tmp_path_factory):
    return make_hand_study(isic2019_dir, tmp_path_factory.mktemp("rs"), n_mel=2, n_nv=2, n_adv=1)


def _client(study_dir, tmp_path, base_url="http://testserver", **kwargs):
    app = create_app(load_study(study_dir), f"sqlite:///{tmp_path / 'answers.sqlite'}", COORD, **kwargs)
    return TestClient(app, base_url=base_url, raise_server_exceptions=False), app.state.store


def test_forged_and_foreign_requests_are_refused(study_dir, tmp_path):
    client, store = _client(study_dir, tmp_path)
    _, csrf = coordinator_login(client, COORD)
    assert csrf
    reader, _ = store.add_reader("Dr Keep")
    # a foreign Origin is refused even with the session's own CSRF token (what a page on another port
    # of the same host could send through the coordinator's logged-in browser), before any route runs
    for path, data in (
        (f"/coordinator/readers/{reader.id}/revoke", {"csrf": csrf}),
        ("/coordinator/readers", {"name": "Evil", "csrf": csrf}),
        ("/coordinator/logout", {"csrf": csrf}),
    ):
        r = client.post(path, data=data, headers=FOREIGN)
        assert r.status_code == 403 and "another site or port" in r.text, path
    assert (
        client.post(
            "/coordinator/readers", data={"name": "Evil", "csrf": csrf}, headers={"Origin": "null"}
        ).status_code
        == 403
    )
    r = client.post(f"/api/coordinator/readers/{reader.id}/revoke", headers={**BEARER, **FOREIGN})
    assert r.status_code == 403 and r.json()["detail"]
    r = client.post(
        "/coordinator/readers",
        data={"name": "Evil", "csrf": csrf},
        headers={"Referer": "http://127.0.0.1:9/evil.html"},
    )
    assert r.status_code == 403
    # without the CSRF token, or with a wrong one, the session cannot change anything
    assert client.post("/coordinator/readers", data={"name": "Evil"}).status_code == 403
    assert (
        client.post("/coordinator/readers", data={"name": "Evil", "csrf": "x" * len(csrf)}).status_code == 403
    )
    assert client.post(f"/coordinator/readers/{reader.id}/revoke", data={"csrf": ""}).status_code == 403
    assert client.post("/api/coordinator/readers", json={"name": "Evil"}).status_code == 403
    # another session's CSRF token does not fit this session
    other = TestClient(client.app)
    _, other_csrf = coordinator_login(other, COORD)
    assert other_csrf != csrf
    assert client.post("/coordinator/readers", data={"name": "Evil", "csrf": other_csrf}).status_code == 403
    assert [r.name for r in store.list_readers()] == ["Dr Keep"] and store.get_reader(
        reader.id
    ).revoked_at is None
    # the own origin with the token works; the JSON API with a session needs the X-CSRF-Token header
    own = {"Origin": "http://testserver"}
    assert (
        client.post("/coordinator/readers", data={"name": "Dr New", "csrf": csrf}, headers=own).status_code
        == 200
    )
    r = client.post(
        "/api/coordinator/readers", json={"name": "Dr Api"}, headers={"X-CSRF-Token": csrf, **own}
    )
    assert r.status_code == 200 and r.json()["name"] == "Dr Api"
    assert [r.name for r in store.list_readers()] == ["Dr Keep", "Dr New", "Dr Api"]
    # reader answers from a foreign origin are refused too (the reader's page posts from its own origin)
    rtoken = client.post("/api/coordinator/readers", json={"name": "Dr R"}, headers=BEARER).json()["token"]
    key = client.get(f"/api/r/{rtoken}/next").json()["image"]
    body = {"image": key, "answer": "melanoma", "confidence": 3, "submission_id": "sid-foreign1"}
    assert client.post(f"/api/r/{rtoken}/answers", json=body, headers=FOREIGN).status_code == 403
    assert client.post(f"/api/r/{rtoken}/answers", json=body, headers=own).status_code == 200


def test_login_messages_rate_limit_and_logout(study_dir, tmp_path):
    client, store = _client(study_dir, tmp_path)
    form = client.get("/coordinator")
    login_csrf = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
    # a login form from elsewhere (no or a forged form token) is refused with the form and a message
    r = client.post("/coordinator/login", data={"token": COORD})
    assert r.status_code == 403 and "expired" in r.text and 'name="token"' in r.text
    r = client.post("/coordinator/login", data={"token": COORD, "csrf": "1700000000.00"})
    assert r.status_code == 403
    # wrong tokens: the login form with a message (not JSON); after 10 failures, 429 even for the right one
    for _ in range(10):
        r = client.post("/coordinator/login", data={"token": "wrong-token", "csrf": login_csrf})
        assert r.status_code == 401 and "text/html" in r.headers["content-type"]
        assert "Wrong coordinator token." in r.text and 'name="token"' in r.text
    r = client.post("/coordinator/login", data={"token": COORD, "csrf": login_csrf})
    assert r.status_code == 429 and "Too many failed attempts" in r.text
    assert client.get("/api/coordinator/progress", headers=BEARER).status_code == 429  # scripts too
    # a fresh app (another address would do the same): log in, log out; the session is then void
    (tmp_path / "b").mkdir()
    client, store = _client(study_dir, tmp_path / "b")
    r, csrf = coordinator_login(client, COORD)
    sid = client.cookies.get("dermadv_coordinator")
    assert sid and COORD not in sid and "secure" not in r.headers["set-cookie"].lower()  # plain HTTP here
    assert client.get("/api/coordinator/progress").status_code == 200
    assert client.post("/coordinator/logout").status_code == 403  # logging out needs the CSRF token too
    out = client.post("/coordinator/logout", data={"csrf": csrf})
    assert out.status_code == 200 and "Logged out." in out.text
    client.cookies.set("dermadv_coordinator", sid)  # the old session id, kept by an attacker
    assert client.get("/api/coordinator/progress").status_code == 401
    assert 'name="token"' in client.get("/coordinator").text


def test_cookie_is_secure_over_https(study_dir, tmp_path):
    client, _ = _client(study_dir, tmp_path, base_url="https://study.example.org")
    r, csrf = coordinator_login(client, COORD)
    cookie = r.headers["set-cookie"].lower()
    assert "secure" in cookie and "httponly" in cookie and "samesite=strict" in cookie and csrf


def test_cookie_secure_behind_a_proxy_and_host_header_ignored(study_dir, tmp_path):
    """The real server behind a (loopback) proxy saying X-Forwarded-Proto: https sets a Secure cookie;
    a forged Host header does not change invite links."""
    db = f"sqlite:///{tmp_path / 'p.sqlite'}"
    public = "https://study.example.org"
    with Server(study_dir, db=db, extra_args=("--public-url", public)) as server:
        with httpx.Client(base_url=server.base, headers={"X-Forwarded-Proto": "https"}) as c:
            r, csrf = coordinator_login(c, "coordinator-secret-token")
            assert r.status_code == 303 and "secure" in r.headers["set-cookie"].lower()
        with httpx.Client(base_url=server.base) as c:
            r, _ = coordinator_login(c, "coordinator-secret-token")
            assert r.status_code == 303 and "secure" not in r.headers["set-cookie"].lower()
        r = httpx.post(
            f"{server.base}/api/coordinator/readers",
            json={"name": "Dr Host"},
            headers={"Authorization": "Bearer coordinator-secret-token", "Host": "evil.example"},
        )
        assert r.status_code == 200 and r.json()["invite_url"].startswith(f"{public}/r/")
    # 'readers add' without --base-url uses the address the server announced
    add = cli(["reader-study", "readers", "add", str(study_dir), "--name", "Dr CLI", "--db", db, "--json"])
    assert json.loads(add.stdout)["invite_url"].startswith(f"{public}/r/")


def _serve_once(study_dir, db, log, port=None):
    return Server(study_dir, port=port, db=db, log=log, token=None).start()


def test_coordinator_token_survives_restarts_until_rotated(study_dir, tmp_path):
    db = f"sqlite:///{tmp_path / 't.sqlite'}"
    log = tmp_path / "serve.log"
    server = _serve_once(study_dir, db, log)
    try:
        token = re.search(r"coordinator token: (\S+)", log.read_text()).group(1)
        assert len(token) >= 30
        with httpx.Client(base_url=server.base) as c:
            _, csrf = coordinator_login(c, token)
            assert csrf
            port = server.port
            server.kill()
            log.write_text("")
            server = _serve_once(study_dir, db, log, port)
            text = log.read_text()
            assert "unchanged" in text and token not in text  # not printed again, not replaced
            assert c.get("/api/coordinator/progress").status_code == 200  # the session survived too
            assert (
                httpx.get(
                    f"{server.base}/api/coordinator/progress", headers={"Authorization": f"Bearer {token}"}
                ).status_code
                == 200
            )
            # rotation (while the server runs): the old token and all sessions stop working at once
            new = cli(["reader-study", "rotate-token", str(study_dir), "--db", db]).stdout.strip()
            assert new and new != token
            assert c.get("/api/coordinator/progress").status_code == 401
            for t, code in ((token, 401), (new, 200)):
                r = httpx.get(
                    f"{server.base}/api/coordinator/progress", headers={"Authorization": f"Bearer {t}"}
                )
                assert r.status_code == code
    finally:
        server.kill()


def test_wildcard_host_gives_links_a_remote_reader_can_use():
    from dermadv.commands.readerstudy import default_public_url

    url = default_public_url("0.0.0.0", 8000)
    assert url.startswith("http://") and url.endswith(":8000")
    assert "0.0.0.0" not in url and "127.0.0.1" not in url
    assert default_public_url("127.0.0.1", 8123) == "http://127.0.0.1:8123"
    assert default_public_url("::1", 8000) == "http://[::1]:8000"


def test_changes_exported_and_exports_honour_the_umask(study_dir, tmp_path):
    db = f"sqlite:///{tmp_path / 'c.sqlite'}"
    study = load_study(study_dir)
    study.settings["allow_change"] = True
    from dermadv.readerstudy.store import AnswerStore

    store = AnswerStore(study, db)
    reader, token = store.add_reader('=HYPERLINK("http://evil.example","x")', "@role")
    key = reader.order[0]
    store.mark_shown(reader, key)
    store.submit(token, key, "melanoma", 2, "sid-chg00001", 800.0)
    store.submit(token, key, "naevus", 4, "sid-chg00002", 600.0)
    out = tmp_path / "out"
    for fmt, name in (("full", "a.csv"), ("changes", "changes.csv")):
        proc = subprocess.run(
            [sys.executable, "-c", "import os, sys; os.umask(0o027); from dermadv.cli import main; main()",
             "reader-study", "export", str(study_dir), "--db", db, "--format", fmt, "--out", str(out / name)],
            capture_output=True, text=True, cwd=REPO, timeout=120,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        for f in (out / name, out / f"{name}.json"):
            assert stat.S_IMODE(os.stat(f).st_mode) == 0o640, f  # group-readable, as the umask says
    full = list(csv.DictReader((out / "a.csv").open()))
    assert full[0]["reader"] == '\'=HYPERLINK("http://evil.example","x")' and full[0]["role"] == "'@role"
    changes = list(csv.DictReader((out / "changes.csv").open()))
    assert len(changes) == 1
    c = changes[0]
    assert (c["image"], c["old_answer"], c["old_confidence"], c["new_answer"], c["new_confidence"]) == (
        key, "melanoma", "2", "naevus", "4",
    )  # fmt: skip
    assert c["ground_truth"] == study.by_key()[key].ground_truth and c["position"] == "1"
    assert c["reader"].startswith("'=") and c["changed_at"].endswith("Z")
    # and from the coordinator page
    app = create_app(study, db, COORD)
    r = TestClient(app).get("/coordinator/changes.csv", headers=BEARER)
    assert r.status_code == 200 and list(csv.DictReader(io.StringIO(r.text)))[0]["new_answer"] == "naevus"
    store.close()


def test_analysis_files_honour_the_umask(tmp_path):
    pytest.importorskip("statsmodels")
    from readerstudy_support import simulate

    answers = simulate(tmp_path / "answers.csv", effect=True, seed=5, n_readers=4, n_per=12)
    out = tmp_path / "analysis"
    proc = subprocess.run(
        [sys.executable, "-c", "import os; os.umask(0o027); from dermadv.cli import main; main()",
         "reader-study", "analyze", str(answers), "--out", str(out)],
        capture_output=True, text=True, cwd=REPO, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    files = [f for f in out.rglob("*") if f.is_file()]
    assert files and {stat.S_IMODE(os.stat(f).st_mode) for f in files} == {0o640}, files
