"""The reader and coordinator pages in headless Chromium at 1920 x 1000, 1366 x 768 and 1280 x 650
against the real server subprocess.

Reader: a 256 px image is fitted to the viewer (enlarged, never beyond the stated maximum), zoom, pan
and Fit work, and every state (missing confidence, saving, retrying, conflict from a second tab with a
way on) is shown inside the window, checked on the element boxes and on screenshots; a NaN posted from
the page is a 422. Coordinator: a wrong token shows the login form with a message, a created invitation
survives a reload without a duplicate reader, the table fits, Revoke asks first, a form submitted from
an attacker page on another loopback port through the logged-in browser is refused, logout works."""

from __future__ import annotations

import csv
import io
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from browser_support import launched_chromium
from readerstudy_support import COORD, Server, cli, free_port, isic_images

pytestmark = pytest.mark.browser

SIZES = [(1920, 1000), (1366, 768), (1280, 650)]
NATURAL = 256
MEASURED: list[dict] = []


@pytest.fixture(scope="module")
def browser():
    with launched_chromium() as b:
        yield b


@pytest.fixture(scope="module")
def small_study(isic2019_dir, tmp_path_factory) -> Path:
    """A study of 256 x 256 px images (the size of a model's input), 3 melanomas and 3 naevi."""
    tmp = tmp_path_factory.mktemp("small")
    src = tmp / "src"
    src.mkdir()
    rows = []
    for image_id, dx in isic_images(isic2019_dir, 3, 3):
        with Image.open(isic2019_dir / "images" / f"{image_id}.jpg") as im:
            im.convert("RGB").resize((NATURAL, NATURAL), Image.BILINEAR).save(src / f"{image_id}.png")
        rows.append(f"{image_id}.png,{dx}")
    (tmp / "manifest.csv").write_text("image,diagnosis\n" + "\n".join(rows) + "\n")
    study = tmp / "study"
    cli(
        [
            "reader-study",
            "build",
            "--images",
            str(src),
            "--manifest",
            str(tmp / "manifest.csv"),
            "--out",
            str(study),
        ]
    )
    return study


def _box(page, selector: str) -> dict:
    box = page.locator(selector).first.bounding_box()
    assert box is not None, f"{selector} is not displayed"
    return box


def _inside_window(page, selector: str, width: int, height: int) -> dict:
    """The element's box, asserted to lie wholly inside the window (visible without scrolling)."""
    b = _box(page, selector)
    assert b["x"] >= -0.5 and b["y"] >= -0.5, (selector, b)
    assert b["x"] + b["width"] <= width + 0.5 and b["y"] + b["height"] <= height + 0.5, (
        selector,
        b,
        width,
        height,
    )
    return b


def _screenshot(page, path: Path) -> np.ndarray:
    page.screenshot(path=str(path))
    return np.asarray(Image.open(path).convert("RGB")).astype(int)


def _status(page, text: str) -> None:
    # a function, not an expression: Playwright re-evaluates an expression with eval() on every poll,
    # which the page's Content Security Policy (no 'unsafe-eval') refuses once polling starts
    page.wait_for_function("(t) => document.getElementById('status').textContent.includes(t)", arg=text)


@pytest.mark.parametrize("size", SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
def test_reader_page_fits_every_window(browser, small_study, tmp_path, size):
    width, height = size
    token = json.loads(
        cli(["reader-study", "readers", "add", str(small_study), "--name", f"Dr W {width}", "--json"]).stdout
    )["token"]
    with Server(small_study) as server:
        ctx = browser.new_context(viewport={"width": width, "height": height})
        page = ctx.new_page()
        page.set_default_timeout(20_000)
        page.goto(f"{server.base}/r/{token}")
        page.click("#start")
        page.wait_for_url(re.compile(r"/item/1$"))
        page.wait_for_function("() => document.getElementById('study-image').style.width !== ''")
        viewer, img = _box(page, "#viewer"), _box(page, "#study-image")
        # fitted: as large as the viewer allows, up to 4x, centred, smooth (not pixelated)
        expected = min(viewer["width"] / NATURAL, viewer["height"] / NATURAL, 4.0) * NATURAL
        assert img["width"] == pytest.approx(expected, abs=1.5) and img["height"] == pytest.approx(
            expected, abs=1.5
        )
        assert img["width"] > 1.5 * NATURAL
        assert (
            img["x"] >= viewer["x"] - 0.5 and img["x"] + img["width"] <= viewer["x"] + viewer["width"] + 0.5
        )
        assert (
            img["y"] >= viewer["y"] - 0.5 and img["y"] + img["height"] <= viewer["y"] + viewer["height"] + 0.5
        )
        assert (
            page.evaluate("getComputedStyle(document.getElementById('study-image')).imageRendering") == "auto"
        )
        assert page.locator("#zoom-level").text_content() == f"\u00d7{expected / NATURAL:.1f}"
        controls = ("#progress", "#progress-text", "#zoom-reset", "#choice-m", "#choice-b", "#rate-1")
        for sel in (*controls, "#rate-5", "#next", "#status", "#viewer"):
            _inside_window(page, sel, width, height)
        assert page.evaluate("document.documentElement.scrollHeight") <= height
        shot = _screenshot(page, tmp_path / "item1.png")
        cx, cy = int(img["x"] + img["width"] / 2), int(img["y"] + img["height"] / 2)
        assert shot[cy - 20 : cy + 20, cx - 20 : cx + 20].mean() > 40  # the lesion is drawn there
        # item 1: the progress bar is an empty track, no green fill anywhere in it
        bar = _box(page, "#progress")
        strip = shot[
            int(bar["y"] + 3) : int(bar["y"] + bar["height"] - 3),
            int(bar["x"] + 3) : int(bar["x"] + bar["width"] - 3),
        ]
        green = (strip[..., 1] > 120) & (strip[..., 1] > strip[..., 0] + 40)
        assert green.mean() < 0.01, f"{green.mean():.0%} of the empty progress bar is green"
        MEASURED.append(
            {
                "window": f"{width}x{height}",
                "viewer": (round(viewer["width"]), round(viewer["height"])),
                "image": (round(img["width"]), round(img["height"])),
                "scale": round(expected / NATURAL, 2),
            }
        )

        # zoom and pan on top of the fit; Fit returns to the fitted size (not to 256 px)
        page.keyboard.press("+")
        page.keyboard.press("+")
        assert "scale(1.5625)" in page.locator("#study-image").get_attribute("style")
        assert _box(page, "#study-image")["width"] == pytest.approx(expected * 1.5625, abs=2)
        before = page.locator("#study-image").get_attribute("style")
        page.mouse.move(viewer["x"] + viewer["width"] / 2, viewer["y"] + viewer["height"] / 2)
        page.mouse.down()
        page.mouse.move(
            viewer["x"] + viewer["width"] / 2 + 60, viewer["y"] + viewer["height"] / 2 + 30, steps=4
        )
        page.mouse.up()
        assert page.locator("#study-image").get_attribute("style") != before  # panned
        page.click("#zoom-reset")
        assert _box(page, "#study-image")["width"] == pytest.approx(expected, abs=1.5)

        # Enter with no confidence chosen says so, visibly
        page.keyboard.press("m")
        page.keyboard.press("Enter")
        _status(page, "confident")
        _inside_window(page, "#status", width, height)
        # a NaN sent from the page is refused with a 422 (no 500)
        code = page.evaluate(
            "async () => (await fetch(document.body.dataset.submit, {method: 'POST', headers: "
            "{'Content-Type': 'application/json'}, body: '{\"client_ms\": NaN}'})).status"
        )
        assert code == 422
        # saving...: the request hangs; the state is visible
        page.evaluate("() => { window.fetch = () => new Promise(() => {}); }")
        page.keyboard.press("3")
        page.keyboard.press("Enter")
        _status(page, "Saving")
        _inside_window(page, "#status", width, height)
        _screenshot(page, tmp_path / "saving.png")
        page.reload()
        page.wait_for_url(re.compile(r"/item/1$"))  # nothing was sent: still item 1
        # retrying...: the connection fails until it comes back; the answer then goes through once
        page.route("**/api/r/*/answers", lambda route: route.abort())
        page.keyboard.press("b")
        page.keyboard.press("2")
        page.keyboard.press("Enter")
        _status(page, "retrying")
        status = _inside_window(page, "#status", width, height)
        shot = _screenshot(page, tmp_path / "retrying.png")
        text_px = shot[
            int(status["y"]) : int(status["y"] + status["height"]),
            int(status["x"]) : int(status["x"] + status["width"]),
        ]
        assert (text_px[..., 0] > 200).any()  # the red status text is in the screenshot
        page.unroute("**/api/r/*/answers")
        page.wait_for_url(re.compile(r"/item/2$"), timeout=30_000)

        # a conflict: the same item answered in a second tab; the first tab says so and offers a way on
        other = ctx.new_page()
        other.goto(page.url)
        other.wait_for_function("() => document.getElementById('study-image').complete")
        other.keyboard.press("m")
        other.keyboard.press("4")
        other.keyboard.press("Enter")
        other.wait_for_url(re.compile(r"/item/3$"))
        other.close()
        page.keyboard.press("b")
        page.keyboard.press("5")
        page.keyboard.press("Enter")
        _status(page, "409")
        _inside_window(page, "#status", width, height)
        _inside_window(page, "#status-link", width, height)
        _inside_window(page, "#next", width, height)
        _screenshot(page, tmp_path / "conflict.png")
        page.click("#status-link")
        page.wait_for_url(re.compile(r"/item/3$"))
        ctx.close()
        export = httpx.get(
            f"{server.base}/coordinator/export.csv", headers={"Authorization": f"Bearer {COORD}"}
        )
    rows = [r for r in csv.DictReader(io.StringIO(export.text)) if r["reader"] == f"Dr W {width}"]
    assert [(r["position"], r["answer"], r["confidence"]) for r in rows] == [
        ("1", "naevus", "2"),
        ("2", "melanoma", "4"),
    ]
    print(MEASURED[-1])


class _Attacker(BaseHTTPRequestHandler):
    """Pages of another site on another loopback port that post forms to the study server."""

    target = ""

    def do_GET(self) -> None:  # noqa: N802
        forms = {
            "/create.html": ("/coordinator/readers", '<input name="name" value="Evil">'),
            "/revoke.html": ("/coordinator/readers/1/revoke", ""),
            "/logout.html": ("/coordinator/logout", ""),
        }
        if self.path not in forms:
            self.send_error(404)
            return
        action, fields = forms[self.path]
        body = (
            f'<!doctype html><form id="f" method="post" action="{self.target}{action}">{fields}'
            '<input name="csrf" value="guessed"></form><script>document.getElementById("f").submit()</script>'
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize("size", SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
def test_coordinator_pages_cannot_be_forged(browser, small_study, tmp_path, size):
    width, height = size
    db = f"sqlite:///{tmp_path / 'coord.sqlite'}"
    attacker = ThreadingHTTPServer(("127.0.0.1", free_port()), _Attacker)
    threading.Thread(target=attacker.serve_forever, daemon=True).start()
    with Server(small_study, db=db) as server:
        _Attacker.target = server.base
        auth = {"Authorization": f"Bearer {COORD}"}

        def names() -> list[str]:
            return [
                p["name"] for p in httpx.get(f"{server.base}/api/coordinator/progress", headers=auth).json()
            ]

        ctx = browser.new_context(viewport={"width": width, "height": height})
        page = ctx.new_page()
        page.set_default_timeout(20_000)
        page.goto(f"{server.base}/coordinator")
        page.fill("#token", "not-the-token")
        page.click("button[type=submit]")
        assert page.locator("#login-message").text_content() == "Wrong coordinator token."
        _inside_window(page, "#login-message", width, height)
        assert page.locator("#token").count() == 1 and "{" not in page.locator("body").text_content()
        page.fill("#token", COORD)
        page.click("button[type=submit]")
        page.wait_for_selector("#add-reader")
        page.fill("input[name=name]", "Dr Amelia Long-Surname-Hyphenated of the Regional Dermatology Service")
        page.fill("input[name=role]", "consultant dermatologist and clinical lead for pigmented lesions")
        page.fill("input[name=years_experience]", "12.5")
        page.click("#add-reader button[type=submit]")
        page.wait_for_selector("#invite-link")
        assert page.url == f"{server.base}/coordinator"  # POST-redirect-GET
        link = page.locator("#invite-link").text_content()
        assert link.startswith(f"{server.base}/r/")
        page.reload()  # reloading does not create a second reader, and the link is not shown again
        page.wait_for_selector("#progress-table")
        assert page.locator("#invite-link").count() == 0 and len(names()) == 1
        for i in range(4):
            long_reader = {
                "name": f"Dr {'Very-Long-Name ' * 3}{i}",
                "role": "registrar " * 6,
                "years_experience": i,
            }
            httpx.post(f"{server.base}/api/coordinator/readers", headers=auth, json=long_reader)
        page.reload()
        table = _box(page, "#progress-table")
        assert table["x"] + table["width"] <= width + 0.5
        assert page.evaluate("document.documentElement.scrollWidth") <= width  # no sideways scrolling
        _screenshot(page, tmp_path / "coordinator.png")

        # the attacker's pages, on another port of the same host, submit forms through this browser
        for path in ("/create.html", "/revoke.html", "/logout.html"):
            page.goto(f"http://127.0.0.1:{attacker.server_port}{path}")
            page.wait_for_url(re.compile(rf"^{re.escape(server.base)}/coordinator"))
            page.wait_for_selector("#message")
            assert "another site or port" in page.locator("#message").text_content()
        assert "Evil" not in names() and len(names()) == 5
        revoked = [
            p
            for p in httpx.get(f"{server.base}/api/coordinator/progress", headers=auth).json()
            if p["status"] == "revoked"
        ]
        assert revoked == []
        page.goto(f"{server.base}/coordinator")
        assert page.locator("#logout").count() == 1  # still logged in: the forged logout did nothing either

        # Revoke asks first; Cancel keeps the reader
        page.click("tr[data-reader='1'] a.button")
        page.wait_for_selector("#revoke-confirm")
        _inside_window(page, "#confirm-revoke", width, height)
        page.click("#cancel-revoke")
        page.wait_for_selector("#progress-table")
        assert httpx.get(link).status_code == 200
        page.click("tr[data-reader='1'] a.button")
        page.click("#confirm-revoke")
        page.wait_for_selector("#progress-table")
        assert "revoked" in page.locator("tr[data-reader='1']").text_content()
        assert httpx.get(link).status_code == 403
        # logout: the session ends; the coordinator page asks for the token again
        page.click("#logout button")
        page.wait_for_selector("#login-message")
        page.goto(f"{server.base}/coordinator")
        assert page.locator("#token").count() == 1 and page.locator("#progress-table").count() == 0
        ctx.close()
    attacker.shutdown()
    attacker.server_close()
