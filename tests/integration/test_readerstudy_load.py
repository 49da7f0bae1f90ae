"""Load on loopback: 30 readers answer concurrently through the HTTP API of the real server
subprocess (threads + httpx), re-sending some answers twice at once; zero lost or duplicated answers."""

from __future__ import annotations

import csv
import io
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from sqlalchemy import create_engine

from readerstudy_support import COORD, Server, make_hand_study, throwaway_postgres

N_READERS = 30


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'study' / 'answers.sqlite'}"  # the default place
    else:
        with throwaway_postgres() as url:
            yield url


def test_thirty_concurrent_readers_lose_nothing(isic2019_dir, tmp_path, db_url):
    study = make_hand_study(isic2019_dir, tmp_path, n_mel=4, n_nv=4, n_adv=2)  # 10 images
    n_images = 10
    expected: dict[tuple[int, str], tuple[str, int]] = {}
    lock = threading.Lock()
    statuses: list[str] = []
    errors: list[str] = []
    with Server(study, db=db_url) as server:
        auth = {"Authorization": f"Bearer {COORD}"}
        readers = []
        with httpx.Client(base_url=server.base, timeout=30) as c:
            for i in range(N_READERS):
                r = c.post(
                    "/api/coordinator/readers",
                    json={"name": f"reader {i}", "years_experience": i % 20},
                    headers=auth,
                )
                assert r.status_code == 200, r.text
                readers.append((r.json()["id"], r.json()["token"]))

        def read_all(reader_id: int, token: str) -> None:
            rng = np.random.default_rng(reader_id)
            with httpx.Client(base_url=server.base, timeout=30) as c:
                for n in range(n_images):
                    nxt = c.get(f"/api/r/{token}/next").json()
                    if nxt["done"]:
                        errors.append(f"reader {reader_id} done after {n}")
                        return
                    body = {
                        "image": nxt["image"],
                        "answer": ["melanoma", "naevus"][rng.integers(2)],
                        "confidence": int(rng.integers(1, 6)),
                        "submission_id": f"sub-r{reader_id:03d}-n{n:03d}",
                        "client_ms": float(rng.integers(300, 5000)),
                    }
                    copies = 2 if n % 3 == 0 else 1  # the same submission sent twice at once
                    with ThreadPoolExecutor(copies) as pool:
                        futures = [
                            pool.submit(c.post, f"/api/r/{token}/answers", json=body) for _ in range(copies)
                        ]
                        replies = [f.result() for f in futures]
                    for rep in replies:
                        if rep.status_code != 200:
                            errors.append(f"reader {reader_id}: {rep.status_code} {rep.text}")
                            return
                    with lock:
                        statuses.extend(rep.json()["status"] for rep in replies)
                        expected[(reader_id, body["image"])] = (body["answer"], body["confidence"])
                final = c.get(f"/api/r/{token}/next").json()
                if not final["done"]:
                    errors.append(f"reader {reader_id}: not done after {n_images} answers: {final}")

        def reader_thread(reader_id: int, token: str) -> None:
            # pytest only warns about an exception in a thread: record it, the main thread asserts
            try:
                read_all(reader_id, token)
            except BaseException as exc:
                errors.append(f"reader {reader_id}: {type(exc).__name__}: {exc}")

        t0 = time.monotonic()
        threads = [threading.Thread(target=reader_thread, args=rd, daemon=True) for rd in readers]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=max(1.0, 120 - (time.monotonic() - t0)))
        elapsed = time.monotonic() - t0
        assert not any(t.is_alive() for t in threads), "readers still running after 120 s"
        assert not errors, errors[:5]
        export = httpx.get(f"{server.base}/coordinator/export.csv", headers=auth, timeout=30).text
        progress = httpx.get(f"{server.base}/api/coordinator/progress", headers=auth, timeout=30).json()
    rows = list(csv.DictReader(io.StringIO(export)))
    assert len(expected) == N_READERS * n_images
    assert len(rows) == N_READERS * n_images  # nothing lost, nothing doubled
    got = {(int(r["reader_id"]), r["image"]): (r["answer"], int(r["confidence"])) for r in rows}
    assert got == expected
    assert statuses.count("stored") == N_READERS * n_images
    assert statuses.count("duplicate") == N_READERS * 4  # items 0, 3, 6, 9 were sent twice
    assert all(p["answered"] == n_images and p["status"] == "done" for p in progress)
    engine = create_engine(db_url)
    with engine.connect() as db:
        assert db.exec_driver_sql("SELECT COUNT(*) FROM answers").scalar() == N_READERS * n_images
        assert db.exec_driver_sql("SELECT COUNT(*) FROM submissions").scalar() == N_READERS * n_images
        assert db.exec_driver_sql("SELECT COUNT(*) FROM answer_changes").scalar() == 0
    engine.dispose()
    print(f"{N_READERS * n_images} answers from {N_READERS} concurrent readers in {elapsed:.1f} s")
    assert elapsed < 120
