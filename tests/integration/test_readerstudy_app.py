"""Reader-study app: every refusal of item 4 (security and bad input) with nothing stored, no
diagnosis leak in pages/URLs/images, change log, CLI readers/export, and building studies."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import sqlite3
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest
from PIL import Image

from dermadv.errors import DataError
from readerstudy_support import cli, free_port, make_hand_study

fastapi = pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from dermadv.readerstudy.app import create_app  # noqa: E402
from dermadv.readerstudy.study import load_study  # noqa: E402

COORD = "coord-token-for-tests"
BEARER = {"Authorization": f"Bearer {COORD}"}


@pytest.fixture(scope="module")
def study_dir(isic2019_dir, tmp_path_factory):
    return make_hand_study(isic2019_dir, tmp_path_factory.mktemp("rs"), n_mel=3, n_nv=3, n_adv=2)


def _client(study_dir, tmp_path, **settings):
    study = load_study(study_dir)
    study.settings.update(settings)
    app = create_app(study, f"sqlite:///{tmp_path / 'answers.sqlite'}", COORD)
    return TestClient(app), app.state.store


def _reader(client, name="A"):
    r = client.post(
        "/api/coordinator/readers", json={"name": name, "role": "derm", "years_experience": 3}, headers=BEARER
    )
    assert r.status_code == 200, r.text
    return r.json()["token"]


def _send(client, token, image, answer="melanoma", confidence=3, sid="sub-0000001", **extra):
    body = {
        "image": image,
        "answer": answer,
        "confidence": confidence,
        "submission_id": sid,
        "client_ms": 900,
        **extra,
    }
    return client.post(f"/api/r/{token}/answers", json=body)


def _count(store, table="answers"):
    with store.engine.connect() as c:
        return c.exec_driver_sql(f"SELECT COUNT(*) FROM {table}").scalar()


def test_sqlite_is_wal_and_full_sync(study_dir, tmp_path):
    client, store = _client(study_dir, tmp_path)
    with store.engine.connect() as c:
        assert c.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert c.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL


def test_answer_flow_idempotency_and_conflict(study_dir, tmp_path):
    client, store = _client(study_dir, tmp_path)
    token = _reader(client)
    nxt = client.get(f"/api/r/{token}/next").json()
    key = nxt["image"]
    r1 = _send(client, token, key, sid="sid-aaaaaaaa")
    assert r1.status_code == 200 and r1.json()["status"] == "stored"
    # the same submission re-sent (e.g. lost response) is accepted once
    r2 = _send(client, token, key, sid="sid-aaaaaaaa")
    assert r2.status_code == 200 and r2.json()["status"] == "duplicate"
    assert _count(store) == 1
    # same submission id with a different answer: refused
    assert _send(client, token, key, answer="naevus", sid="sid-aaaaaaaa").status_code == 409
    # a second, different answer without change permission: 409, nothing stored
    r3 = _send(client, token, key, answer="naevus", sid="sid-bbbbbbbb")
    assert r3.status_code == 409
    assert store.answers_of(1)[key]["answer"] == "melanoma"
    assert _count(store, "answer_changes") == 0
    # an identical answer under a new id changes nothing
    assert _send(client, token, key, sid="sid-cccccccc").json()["status"] == "unchanged"
    assert _count(store) == 1
    state = client.get(f"/api/r/{token}/state").json()
    assert state["answered"] == 1 and state["next_position"] == 2


def test_changes_allowed_are_logged(study_dir, tmp_path):
    client, store = _client(study_dir, tmp_path, allow_change=True)
    token = _reader(client)
    key = client.get(f"/api/r/{token}/next").json()["image"]
    assert _send(client, token, key, sid="sid-11111111").json()["status"] == "stored"
    r = _send(client, token, key, answer="naevus", confidence=5, sid="sid-22222222")
    assert r.status_code == 200 and r.json()["status"] == "changed"
    changes = store.changes()
    assert len(changes) == 1
    assert (changes[0]["old_answer"], changes[0]["new_answer"], changes[0]["new_confidence"]) == (
        "melanoma",
        "naevus",
        5,
    )
    row = store.export_rows()[0]
    assert (row["answer"], row["confidence"], row["n_changes"]) == ("naevus", 5, 1)
    # going back is possible: item 1 page renders with the stored answer pre-selected
    client.post(f"/r/{token}/consent")
    page = client.get(f"/r/{token}/item/1")
    assert page.status_code == 200 and 'data-existing-answer="naevus"' in page.text


@pytest.mark.parametrize(
    "body, status",
    [
        ({"answer": "melanoma", "confidence": 3, "submission_id": "sid-xxxxxxxx"}, 422),  # no image
        ({"image": "KEY", "answer": "melanoma", "confidence": 3, "submission_id": "short"}, 422),
        ({"image": "KEY", "answer": "bcc", "confidence": 3, "submission_id": "sid-xxxxxxxx"}, 422),
        ({"image": "KEY", "answer": "melanoma", "confidence": 7, "submission_id": "sid-xxxxxxxx"}, 422),
        ({"image": "KEY", "answer": "melanoma", "confidence": "3", "submission_id": "sid-xxxxxxxx"}, 422),
        ({"image": "KEY", "answer": "melanoma", "submission_id": "sid-xxxxxxxx"}, 422),  # confidence required
        ({"image": "KEY", "answer": "melanoma", "confidence": 3, "submission_id": "sid-x;drop table"}, 422),
        (
            {
                "image": "KEY",
                "answer": "melanoma",
                "confidence": 3,
                "submission_id": "sid-xxxxxxxx",
                "reader_id": 2,
            },
            422,
        ),  # unknown fields (e.g. trying to name another reader) are refused
        (
            {
                "image": "KEY",
                "answer": "melanoma",
                "confidence": 3,
                "submission_id": "sid-xxxxxxxx",
                "client_ms": -5,
            },
            422,
        ),
        (
            {
                "image": "../manifest.csv0",
                "answer": "melanoma",
                "confidence": 3,
                "submission_id": "sid-xxxxxxxx",
            },
            422,
        ),
        (
            {
                "image": "0123456789abcdef",
                "answer": "melanoma",
                "confidence": 3,
                "submission_id": "sid-xxxxxxxx",
            },
            404,
        ),  # not in the reader's set
    ],
)
def test_malformed_and_foreign_answers_are_refused(study_dir, tmp_path, body, status):
    client, store = _client(study_dir, tmp_path)
    token = _reader(client)
    key = client.get(f"/api/r/{token}/next").json()["image"]
    if body.get("image") == "KEY":
        body["image"] = key
    r = client.post(f"/api/r/{token}/answers", json=body)
    assert r.status_code == status, r.text
    assert "detail" in r.json()
    assert _count(store) == 0 and _count(store, "submissions") == 0


def test_not_json_and_unshown_image_are_refused(study_dir, tmp_path):
    client, store = _client(study_dir, tmp_path)
    token = _reader(client)
    r = client.post(
        f"/api/r/{token}/answers", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 422
    # an image of the reader's set that was never shown (skipping ahead) is refused
    order = store.list_readers()[0].order
    client.get(f"/api/r/{token}/next")
    r = _send(client, token, order[3])
    assert r.status_code == 409 and "not been shown" in r.json()["detail"]
    assert _count(store) == 0


def test_unknown_and_revoked_tokens(study_dir, tmp_path):
    client, store = _client(study_dir, tmp_path)
    token = _reader(client)
    key = client.get(f"/api/r/{token}/next").json()["image"]
    fake = "x" * 32
    assert client.get(f"/r/{fake}").status_code == 404
    assert client.get(f"/api/r/{fake}/state").status_code == 404
    assert _send(client, fake, key).status_code == 404
    assert client.get(f"/r/{fake}/image/{key}").status_code == 404
    rid = store.list_readers()[0].id
    assert client.post(f"/api/coordinator/readers/{rid}/revoke", headers=BEARER).json()["revoked"]
    assert client.get(f"/r/{token}").status_code == 403
    assert _send(client, token, key).status_code == 403
    assert client.get(f"/r/{token}/image/{key}").status_code == 403
    assert _count(store) == 0


def test_one_reader_cannot_reach_another(study_dir, tmp_path):
    client, store = _client(study_dir, tmp_path)
    ta, tb = _reader(client, "A"), _reader(client, "B")
    ka = client.get(f"/api/r/{ta}/next").json()["image"]
    assert _send(client, ta, ka, sid="sid-aaaaaaaa").status_code == 200
    # B's state shows nothing of A's; B cannot overwrite A's answer (it can only ever write its own)
    assert client.get(f"/api/r/{tb}/state").json()["answers"] == []
    assert _send(client, tb, ka, answer="naevus", sid="sid-aaaaaaaa").status_code == 409  # not shown to B
    assert store.answers_of(1)[ka]["answer"] == "melanoma"
    assert store.answers_of(2) == {}
    # readers see their images in different orders, each reproducible from the recorded seed
    from dermadv.readerstudy.store import reader_order

    a, b = store.list_readers()
    assert list(a.order) == reader_order(store.study.keys(), a.seed)
    assert sorted(a.order) == sorted(b.order) == sorted(store.study.keys())
    # coordinator endpoints need the coordinator token
    assert client.get("/coordinator/export.csv").status_code == 401
    assert client.get("/coordinator/export.csv", headers={"Authorization": f"Bearer {ta}"}).status_code == 401
    assert client.post("/api/coordinator/readers", json={"name": "x"}).status_code == 401
    assert client.get("/coordinator").text.count('name="token"') == 1  # login form, no data


@pytest.mark.parametrize(
    "path",
    [
        "/r/{t}/image/..%2F..%2Fmanifest.csv",
        "/r/{t}/image/../../manifest.csv",
        "/r/{t}/image/%2e%2e%2fstudy.json",
        "/r/{t}/image/{k}.png",
        "/r/{t}/image/{K}",
        "/static/..%2Fstudy.py",
        "/r/{t}/image/..%2f..%2fanswers.sqlite",
    ],
)
def test_path_traversal_is_refused(study_dir, tmp_path, path):
    client, _ = _client(study_dir, tmp_path)
    token = _reader(client)
    key = client.get(f"/api/r/{token}/next").json()["image"]
    r = client.get(path.format(t=token, k=key, K=key.upper()))
    assert r.status_code == 404
    assert b"image_key" not in r.content and b"study_id" not in r.content


def test_no_diagnosis_leaks(study_dir, tmp_path):
    client, store = _client(study_dir, tmp_path)
    token = _reader(client)
    client.post(f"/r/{token}/consent")
    study = store.study
    truth = {im.key: im for im in study.images}
    order = store.list_readers()[0].order
    pages = {}
    for pos, key in enumerate(order, start=1):
        page = client.get(f"/r/{token}/item/{pos}")
        assert page.status_code == 200
        pages[key] = page.text
        img = client.get(f"/r/{token}/image/{key}")
        assert img.status_code == 200 and img.headers["content-type"] == "image/png"
        assert "content-disposition" not in img.headers
        with Image.open(io.BytesIO(img.content)) as im:
            assert not im.info and not im.getexif()  # no EXIF, no text chunks
        for word in ("ISIC_", "adversarial", "unmodified", "color", "ground", "attack"):
            assert word not in page.text and word not in img.headers.get("etag", "")
        _send(client, token, key, sid=f"sid-{pos:08d}")
    # pages of a melanoma and a naevus differ only by the key, position and progress
    mel = next(k for k in order if truth[k].ground_truth == "melanoma")
    nv = next(k for k in order if truth[k].ground_truth == "naevus")

    def normalise(key):
        text = pages[key].replace(key, "KEY")
        return "\n".join(
            line
            for line in text.splitlines()
            if "progress" not in line and "data-number" not in line and "Dermoscopic image" not in line
        )

    assert normalise(mel) == normalise(nv)
    assert all(len(k) == 16 for k in order) and not any(im.file.startswith("ISIC") for im in study.images)


def test_cli_readers_and_export(study_dir, tmp_path):
    db = f"sqlite:///{tmp_path / 'cli.sqlite'}"
    out = cli(
        [
            "reader-study",
            "readers",
            "add",
            str(study_dir),
            "--name",
            "Dr B",
            "--years",
            "12",
            "--db",
            db,
            "--json",
        ]
    )
    info = json.loads(out.stdout)
    assert info["invite_url"].endswith(info["token"]) and len(info["token"]) >= 32
    listing = cli(["reader-study", "readers", "list", str(study_dir), "--db", db, "--json"])
    assert json.loads(listing.stdout)[0]["name"] == "Dr B"
    # answer one image through the store, then export both formats
    study = load_study(study_dir)
    from dermadv.readerstudy.store import AnswerStore

    store = AnswerStore(study, db)
    reader = store.reader_by_token(info["token"])
    store.mark_shown(reader, reader.order[0])
    store.submit(info["token"], reader.order[0], "naevus", 2, "sid-cli00001", 1500.0)
    cli(["reader-study", "export", str(study_dir), "--db", db, "--out", str(tmp_path / "a.csv")])
    rows = list(csv.DictReader((tmp_path / "a.csv").open()))
    assert len(rows) == 1 and rows[0]["answer"] == "naevus" and rows[0]["confidence"] == "2"
    assert rows[0]["ground_truth"] == study.by_key()[reader.order[0]].ground_truth
    cli(
        [
            "reader-study",
            "export",
            str(study_dir),
            "--db",
            db,
            "--format",
            "original",
            "--reader",
            "1",
            "--out",
            str(tmp_path / "o.csv"),
        ]
    )
    assert (tmp_path / "o.csv").read_text().splitlines() == [
        "Image_name,Diagnosis",
        f"{reader.order[0]}.png,Benign naevus",
    ]
    revoked = cli(["reader-study", "readers", "revoke", str(study_dir), "1", "--db", db])
    assert "revoked" in revoked.stdout
    bad = cli(["reader-study", "readers", "revoke", str(study_dir), "99", "--db", db], check=False)
    assert bad.returncode == 2 and "no reader with id 99" in bad.stderr


def test_database_bound_to_its_study(study_dir, isic2019_dir, tmp_path):
    other = make_hand_study(isic2019_dir, tmp_path / "other", n_mel=1, n_nv=1, n_adv=0)
    _client(study_dir, tmp_path)  # creates answers.sqlite in tmp_path for study_dir
    with pytest.raises(DataError, match="belongs to study"):
        from dermadv.readerstudy.store import AnswerStore

        AnswerStore(load_study(other), f"sqlite:///{tmp_path / 'answers.sqlite'}")


def test_build_refuses_bad_manifests(isic2019_dir, tmp_path):
    from dermadv.readerstudy.build import build_from_images

    images = isic2019_dir / "images"
    bad = tmp_path / "bad.csv"
    bad.write_text("image,diagnosis\nISIC_0000008,bcc\n")
    with pytest.raises(DataError, match="line 2: ground truth 'bcc'"):
        build_from_images(images, bad, tmp_path / "s1")
    bad.write_text("image,diagnosis\nNOPE_123,mel\n")
    with pytest.raises(DataError, match="line 2: image 'NOPE_123' not found"):
        build_from_images(images, bad, tmp_path / "s2")
    bad.write_text("picture,dx\n")
    with pytest.raises(DataError, match="needs an image column"):
        build_from_images(images, bad, tmp_path / "s3")
    assert not (tmp_path / "s1").exists() and not (tmp_path / "s2").exists()


def test_build_from_attack_runs(isic2019_dir, tmp_path):
    """--from RUN: a run written with the campaign's ResultsStore (real images, real PNGs)."""
    from dermadv.campaign.store import ResultsStore
    from dermadv.data.images import load_image
    from readerstudy_support import isic_images

    picked = isic_images(isic2019_dir, 6, 6)
    run = tmp_path / "run"
    with ResultsStore(run) as store:
        for n, (image_id, dx) in enumerate(picked):
            img = load_image(isic2019_dir / "images" / f"{image_id}.jpg")[:128, :128]
            for attack in ("color", "rotation"):
                success = dx == "mel" and (n + (attack == "rotation")) % 2 == 0
                store.add(
                    {
                        "image_id": image_id,
                        "attack": attack,
                        "direction": "mel->nv",
                        "outcome": "success" if success else "failure",
                        "true_group": "melanoma" if dx == "mel" else "benign",
                        "initial_probs": [0.8, 0.2],
                        "final_probs": [0.3, 0.7] if success else [0.7, 0.3],
                        "initial_conf": 0.8,
                        "final_conf": 0.3 if success else 0.7,
                        "params": {"c": [1.05, 0.95, 1.0]},
                        "queries": 100,
                        "generations": 3,
                        "seconds": 0.1,
                        "original": img,
                        "adversarial": np.clip(img.astype(int) + 3, 0, 255).astype(np.uint8),
                    },
                    diagnosis=dx,
                )
    out = cli(
        [
            "reader-study",
            "build",
            "--from",
            str(run),
            "--per-attack",
            "2",
            "--unmodified",
            "6",
            "--out",
            str(tmp_path / "study"),
            "--json",
        ]
    )
    summary = json.loads(out.stdout)
    study = load_study(tmp_path / "study")
    adv = [im for im in study.images if im.condition == "adversarial"]
    unm = [im for im in study.images if im.condition == "unmodified"]
    assert sorted(im.attack for im in adv) == ["color", "color", "rotation", "rotation"]
    assert all(im.ground_truth == "melanoma" for im in adv)
    # unmodified: naevi, plus melanomas whose adversarial version is not in the study (no lesion twice)
    assert {im.source_image_id for im in unm}.isdisjoint({im.source_image_id for im in adv})
    assert sum(im.ground_truth == "naevus" for im in unm) == 3
    assert any("unmodified melanoma" in s for s in summary["shortfalls"])  # 2 left of 3 asked: reported
    for im in adv:
        assert json.loads(im.extra["params"]) == {"c": [1.05, 0.95, 1.0]} and im.extra["final_conf"] == "0.3"
    with sqlite3.connect(run / "results.sqlite") as c:
        assert c.execute("select count(*) from results").fetchone()[0] == 24
    assert json.loads((tmp_path / "study" / "study.json").read_text())["build"]["per_attack"] == 2
    # several runs after one --from (the issue's `--from RUN...`), e.g. two models' campaigns
    import shutil

    shutil.copytree(run, tmp_path / "run2")
    args = ["reader-study", "build", "--from", str(run), str(tmp_path / "run2"), "--per-attack", "2"]
    cli([*args, "--unmodified", "2", "--out", str(tmp_path / "study2")])
    build = json.loads((tmp_path / "study2" / "study.json").read_text())["build"]
    assert build["runs"] == [str(run.resolve()), str((tmp_path / "run2").resolve())]
    stray = cli(["reader-study", "build", str(run), "--out", str(tmp_path / "study3")], check=False)
    assert stray.returncode == 2 and "follow --from" in stray.stderr


def test_coordinator_pages_login_create_revoke(study_dir, tmp_path):
    from readerstudy_support import coordinator_login

    client, store = _client(study_dir, tmp_path)
    login = client.get("/coordinator")
    form = re.search(r'name="csrf" value="([^"]+)"', login.text).group(1)
    wrong = client.post("/coordinator/login", data={"token": "wrong-token", "csrf": form})
    assert (
        wrong.status_code == 401 and "Wrong coordinator token" in wrong.text and 'name="token"' in wrong.text
    )
    # the raw coordinator token in the cookie is no session
    client.cookies.set("dermadv_coordinator", COORD)
    assert 'name="token"' in client.get("/coordinator").text
    client.cookies.clear()
    r, csrf = coordinator_login(client, COORD)
    assert r.status_code == 303 and "samesite=strict" in r.headers["set-cookie"].lower()
    assert COORD not in r.headers["set-cookie"] and "httponly" in r.headers["set-cookie"].lower()
    page = client.post(
        "/coordinator/readers",
        data={"name": "Dr Web", "role": "registrar", "years_experience": "2", "csrf": csrf},
        follow_redirects=False,
    )
    assert page.status_code == 303 and page.headers["location"] == "/coordinator"  # POST-redirect-GET
    shown = client.get("/coordinator")
    link = re.search(r'<code id="invite-link">([^<]+)</code>', shown.text).group(1)
    token = link.rsplit("/", 1)[1]
    assert link.startswith("http://127.0.0.1:8000/r/")  # the configured address, never the Host header
    assert store.reader_by_token(token).name == "Dr Web"
    again = client.get("/coordinator")  # a reload: the link is not shown again, no second reader
    assert "invite-link" not in again.text and "Dr Web" in again.text and len(store.list_readers()) == 1
    bad = client.post("/coordinator/readers", data={"name": "X", "years_experience": "many", "csrf": csrf})
    assert bad.status_code == 422
    for years in ("nan", "inf", "-1", "1e400"):
        assert (
            client.post(
                "/coordinator/readers", data={"name": "X", "years_experience": years, "csrf": csrf}
            ).status_code
            == 422
        )
    assert len(store.list_readers()) == 1
    # revoking asks first (a page naming the reader), then needs the CSRF token
    confirm = client.get("/coordinator/readers/1/revoke")
    assert confirm.status_code == 200 and "Revoke the invitation of Dr Web?" in confirm.text
    assert store.get_reader(1).revoked_at is None
    assert client.post("/coordinator/readers/1/revoke").status_code == 403
    assert client.post("/coordinator/readers/1/revoke", data={"csrf": "x" * 43}).status_code == 403
    assert store.get_reader(1).revoked_at is None
    client.post("/coordinator/readers/1/revoke", data={"csrf": csrf})
    assert store.get_reader(1).revoked_at is not None
    assert client.get(f"/r/{token}").status_code == 403


def test_serve_prints_a_random_coordinator_token(study_dir, tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "DERMADV_COORDINATOR_TOKEN"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dermadv.cli",
            "reader-study",
            "serve",
            str(study_dir),
            "--port",
            str(port),
            "--db",
            f"sqlite:///{tmp_path / 'serve.sqlite'}",
        ],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    try:
        token = None
        for _ in range(5):
            line = proc.stderr.readline()
            if line.startswith("coordinator token:"):
                token = line.split(":", 1)[1].strip()
                break
        assert token and len(token) >= 20
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                httpx.get(f"{base}/healthz", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        assert (
            httpx.get(f"{base}/api/coordinator/progress", headers={"Authorization": f"Bearer {token}"}).json()
            == []
        )
        assert (
            httpx.get(
                f"{base}/api/coordinator/progress", headers={"Authorization": "Bearer nope"}
            ).status_code
            == 401
        )
    finally:
        proc.kill()
        proc.wait(timeout=10)
        proc.stderr.close()


def test_build_from_runs_takes_unmodified_images_from_the_attacked_dataset(isic2019_dir, tmp_path):
    """A mel->nv campaign holds no naevi: unmodified images come from the dataset named in run.json,
    prepared at the model's input size like the adversarial images."""
    from dermadv.campaign.store import ResultsStore
    from dermadv.data.images import load_image, resize_uint8
    from dermadv.readerstudy.build import build_from_runs
    from readerstudy_support import isic_images

    run = tmp_path / "run"
    mels = [i for i, _ in isic_images(isic2019_dir, 4, 0)]
    with ResultsStore(run) as store:
        for image_id in mels:
            img = resize_uint8(load_image(isic2019_dir / "images" / f"{image_id}.jpg"), (96, 96))
            store.add(
                {
                    "image_id": image_id,
                    "attack": "color",
                    "direction": "mel->nv",
                    "outcome": "success",
                    "true_group": "melanoma",
                    "initial_probs": [0.9, 0.1],
                    "final_probs": [0.2, 0.8],
                    "initial_conf": 0.9,
                    "final_conf": 0.2,
                    "params": {},
                    "queries": 10,
                    "generations": 1,
                    "seconds": 0.1,
                    "original": img,
                    "adversarial": 255 - img,
                },
                diagnosis="mel",
            )
    (run / "run.json").write_text(
        json.dumps(
            {
                "settings": {
                    "model": {"input_size": [96, 96], "decoder": "pil", "resize": "bilinear"},
                    "data": {"path": str(isic2019_dir)},
                }
            }
        )
    )
    study, summary = build_from_runs([run], tmp_path / "study", per_attack=4, unmodified=10, seed=3)
    unm = [im for im in study.images if im.condition == "unmodified"]
    assert (
        sum(im.ground_truth == "naevus" for im in unm)
        == 5
        == sum(im.ground_truth == "melanoma" for im in unm)
    )
    assert not {im.source_image_id for im in unm} & set(mels)  # no lesion shown twice
    assert summary["shortfalls"] == [] and summary["unmodified_source"] == str(isic2019_dir)
    for im in study.images:
        with Image.open(study.root / "images" / im.file) as pic:
            assert pic.size == (96, 96)
    # the same seed draws the same images
    again, _ = build_from_runs([run], tmp_path / "study2", per_attack=4, unmodified=10, seed=3)
    assert sorted(i.source_image_id for i in again.images) == sorted(i.source_image_id for i in study.images)


def test_invite_links_use_the_public_url(study_dir, tmp_path):
    app = create_app(
        load_study(study_dir), f"sqlite:///{tmp_path / 'p.sqlite'}", COORD, "https://study.example.org/"
    )
    r = TestClient(app).post("/api/coordinator/readers", json={"name": "Dr P"}, headers=BEARER)
    assert r.json()["invite_url"] == f"https://study.example.org/r/{r.json()['token']}"
