"""A reader completes a real study in headless Chromium against the real server subprocess, with the
mouse and the keyboard; the server is SIGKILLed mid-study and restarted, the browser is closed and
reopened, and every answer survives; the export matches what was clicked."""

from __future__ import annotations

import csv
import io
import json
import re
import sqlite3

import httpx
import pytest

from browser_support import launched_chromium
from readerstudy_support import COORD, Server, cli, make_hand_study

pytestmark = pytest.mark.browser


@pytest.fixture()
def browser():
    with launched_chromium() as b:
        yield b


def _answer(page, number: int, how: str, answer: str, confidence: int) -> str:
    """Answer the item shown (mouse or keyboard) and wait until the next page is shown."""
    page.wait_for_url(re.compile(rf"/item/{number}$"))
    key = page.locator("body").get_attribute("data-image")
    page.wait_for_function("() => document.getElementById('study-image').complete")
    if how == "mouse":
        page.click(f"button.choice[data-value='{answer}']")
        page.click(f"#rate-{confidence}")
        page.click("#next")
    else:
        page.keyboard.press("m" if answer == "melanoma" else "b")
        page.keyboard.press(str(confidence))
        page.keyboard.press("Enter")
    return key


def test_reader_completes_study_through_crash_and_browser_restart(browser, isic2019_dir, tmp_path):
    study = make_hand_study(isic2019_dir, tmp_path, n_mel=3, n_nv=2, n_adv=2)  # 7 images
    add = cli(
        [
            "reader-study",
            "readers",
            "add",
            str(study),
            "--name",
            "Dr Test",
            "--role",
            "dermatologist",
            "--years",
            "7",
            "--json",
        ]
    )
    token = json.loads(add.stdout)["token"]
    server = Server(study).start()
    link = f"{server.base}/r/{token}"
    clicked: dict[str, tuple[str, int]] = {}
    plan = [
        ("mouse", "melanoma", 4),
        ("keyboard", "naevus", 2),
        ("mouse", "naevus", 5),
        ("keyboard", "melanoma", 3),
        ("mouse", "melanoma", 1),
        ("keyboard", "naevus", 4),
        ("mouse", "melanoma", 5),
    ]
    try:
        ctx = browser.new_context()
        page = ctx.new_page()
        page.set_default_timeout(20_000)
        page.goto(link)
        assert "Before you start" in page.content()
        page.click("#start")
        for i in range(3):
            clicked[_answer(page, i + 1, *plan[i])] = plan[i][1:]
        # the progress bar and zoom work
        page.wait_for_url(re.compile(r"/item/4$"))
        assert page.locator("#progress").get_attribute("value") == "3"
        page.keyboard.press("+")
        assert "scale(1.25)" in page.locator("#study-image").get_attribute("style")
        page.keyboard.press("0")
        # item 4: the server dies (SIGKILL) before the answer is sent; the page keeps retrying
        key4 = page.locator("body").get_attribute("data-image")
        server.kill()
        page.keyboard.press("m")
        page.keyboard.press("3")
        page.keyboard.press("Enter")
        page.wait_for_function("() => document.getElementById('status').textContent.includes('retrying')")
        server = Server(study, port=server.port).start()
        page.wait_for_url(re.compile(r"/item/5$"), timeout=30_000)
        clicked[key4] = ("melanoma", 3)
        clicked[_answer(page, 5, *plan[4])] = plan[4][1:]
        page.wait_for_url(re.compile(r"/item/6$"))
        # the reader closes the browser, and comes back later with the same link
        ctx.close()
        ctx = browser.new_context()
        page = ctx.new_page()
        page.set_default_timeout(20_000)
        page.goto(link)
        page.wait_for_url(re.compile(r"/item/6$"))
        for i in (5, 6):
            clicked[_answer(page, i + 1, *plan[i])] = plan[i][1:]
        page.wait_for_url(re.compile(r"/done$"))
        assert "All 7 answers are saved" in page.content()
        # no change allowed: going back to an answered item leads to the done page
        page.goto(f"{link}/item/2")
        page.wait_for_url(re.compile(r"/done$"))
        ctx.close()
        export = httpx.get(
            f"{server.base}/coordinator/export.csv", headers={"Authorization": f"Bearer {COORD}"}
        )
        assert export.status_code == 200
    finally:
        server.kill()
    rows = list(csv.DictReader(io.StringIO(export.text)))
    assert len(rows) == 7 == len(clicked)
    assert {r["image"]: (r["answer"], int(r["confidence"])) for r in rows} == clicked
    assert [int(r["position"]) for r in rows] == list(range(1, 8))
    for r in rows:
        assert float(r["client_ms"]) > 0 and float(r["server_ms"]) > 0
        assert r["n_changes"] == "0" and r["reader"] == "Dr Test"
    assert sum(r["condition"] == "adversarial" for r in rows) == 2
    # the answer sent while the server was down took longer than the restart on the server's clock
    by_key = {r["image"]: r for r in rows}
    assert float(by_key[key4]["server_ms"]) > 300


def test_reader_goes_back_and_changes_an_answer(browser, isic2019_dir, tmp_path):
    """A study that allows changes: Arrow-left shows the earlier image with its answer selected; the
    change is stored and logged in answer_changes."""
    study = make_hand_study(isic2019_dir, tmp_path, n_mel=2, n_nv=1, n_adv=0, extra_args=("--allow-change",))
    token = json.loads(
        cli(["reader-study", "readers", "add", str(study), "--name", "Dr C", "--json"]).stdout
    )["token"]
    with Server(study) as server:
        page = browser.new_page()
        page.set_default_timeout(20_000)
        page.goto(f"{server.base}/r/{token}")
        page.click("#start")
        first = _answer(page, 1, "keyboard", "melanoma", 2)
        page.wait_for_url(re.compile(r"/item/2$"))
        page.keyboard.press("ArrowLeft")
        page.wait_for_url(re.compile(r"/item/1$"))
        assert page.locator("#choice-m").get_attribute("aria-pressed") == "true"
        assert page.locator("#rate-2").get_attribute("aria-pressed") == "true"
        page.click("#choice-b")
        page.click("#rate-5")
        page.click("#next")
        second = _answer(page, 2, "mouse", "melanoma", 4)
        third = _answer(page, 3, "keyboard", "naevus", 1)
        page.wait_for_url(re.compile(r"/done$"))
        assert page.locator("a", has_text="Review or change").count() == 1
        page.close()
        auth = {"Authorization": f"Bearer {COORD}"}
        rows = list(
            csv.DictReader(io.StringIO(httpx.get(f"{server.base}/coordinator/export.csv", headers=auth).text))
        )
    got = {r["image"]: (r["answer"], int(r["confidence"]), int(r["n_changes"])) for r in rows}
    assert got == {first: ("naevus", 5, 1), second: ("melanoma", 4, 0), third: ("naevus", 1, 0)}
    with sqlite3.connect(study / "answers.sqlite") as db:
        log = db.execute(
            "SELECT image_key, old_answer, old_confidence, new_answer, new_confidence FROM answer_changes"
        )
        assert log.fetchall() == [(first, "melanoma", 2, "naevus", 5)]
