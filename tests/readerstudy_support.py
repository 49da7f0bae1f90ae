"""Helpers shared by the reader-study tests: a small hand-made study from real ISIC images and a
real server subprocess on a free loopback port."""

from __future__ import annotations

import contextlib
import csv
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
COORD = "coordinator-secret-token"


def isic_images(isic2019_dir: Path, n_mel: int, n_nv: int) -> list[tuple[str, str]]:
    """The first n_mel melanomas and n_nv naevi of the ISIC 2019 dev folder as (image_id, 'mel'|'nv')."""
    out: list[tuple[str, str]] = []
    with (isic2019_dir / "ISIC_2019_Training_GroundTruth.csv").open() as fh:
        for row in csv.DictReader(fh):
            if float(row["MEL"]) == 1.0 and sum(d == "mel" for _, d in out) < n_mel:
                out.append((row["image"], "mel"))
            elif float(row["NV"]) == 1.0 and sum(d == "nv" for _, d in out) < n_nv:
                out.append((row["image"], "nv"))
    return out


def make_hand_study(
    isic2019_dir: Path, tmp: Path, *, n_mel: int = 3, n_nv: int = 3, n_adv: int = 2, extra_args: tuple = ()
) -> Path:
    """Build a study via the CLI from real images: unmodified ones plus colour-scaled 'adversarial' copies
    of the first n_adv melanomas (channel gains as in the colour attack, within [0.9, 1.1])."""
    src = tmp / "src"
    src.mkdir(parents=True, exist_ok=True)
    rows = []
    picked = isic_images(isic2019_dir, n_mel, n_nv)
    for image_id, dx in picked:
        rows.append({"image": f"{image_id}.jpg", "diagnosis": dx, "condition": "unmodified", "attack": ""})
    mel = [i for i, d in picked if d == "mel"]
    for k, image_id in enumerate(mel[:n_adv]):
        arr = np.asarray(
            Image.open(isic2019_dir / "images" / f"{image_id}.jpg").convert("RGB"), dtype=np.float64
        )
        gains = np.array([1.09, 0.93, 1.04]) if k % 2 == 0 else np.array([0.92, 1.07, 0.95])
        adv = np.clip(arr * gains, 0, 255).astype(np.uint8)
        name = f"{image_id}_color.png"
        Image.fromarray(adv).save(src / name)
        rows.append({"image": name, "diagnosis": "melanoma", "condition": "adversarial", "attack": "color"})
    for image_id, _ in picked:
        target = src / f"{image_id}.jpg"
        if not target.exists():
            target.symlink_to(isic2019_dir / "images" / f"{image_id}.jpg")
    manifest = tmp / "manifest.csv"
    with manifest.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["image", "diagnosis", "condition", "attack"])
        w.writeheader()
        w.writerows(rows)
    study = tmp / "study"
    cli(
        [
            "reader-study",
            "build",
            "--images",
            str(src),
            "--manifest",
            str(manifest),
            "--out",
            str(study),
            *extra_args,
        ]
    )
    return study


def coordinator_login(client, token: str, **kwargs):  # noqa: ANN001, ANN201
    """Log ``client`` (httpx or TestClient) in through the login form; returns (response, CSRF token)."""
    import re

    form = client.get("/coordinator", **kwargs)
    login_csrf = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
    r = client.post(
        "/coordinator/login", data={"token": token, "csrf": login_csrf}, follow_redirects=False, **kwargs
    )
    page = client.get("/coordinator", **kwargs)
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    return r, (found.group(1) if found and "Log out" in page.text else "")


def cli(args: list[str], check: bool = True) -> subprocess.CompletedProcess:
    """Run ``python -m dermadv.cli ARGS`` in a subprocess."""
    proc = subprocess.run(
        [sys.executable, "-m", "dermadv.cli", *args], capture_output=True, text=True, timeout=120, cwd=REPO
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"dermadv {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """``dermadv reader-study serve`` as a real subprocess."""

    def __init__(
        self,
        study: Path,
        port: int | None = None,
        db: str | None = None,
        log: Path | None = None,
        extra_args: tuple[str, ...] = (),
        token: str | None = COORD,
    ) -> None:
        """``log``: file for the server's stderr (appended to); ``token``: None serves with the study's
        own coordinator token."""
        self.study, self.port, self.db = study, port or free_port(), db
        self.log, self.extra_args, self.token = log, extra_args, token
        self.proc: subprocess.Popen | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> Server:
        args = [
            sys.executable,
            "-m",
            "dermadv.cli",
            "reader-study",
            "serve",
            str(self.study),
            "--port",
            str(self.port),
            *self.extra_args,
        ]
        if self.token is not None:
            args += ["--coordinator-token", self.token]
        if self.db:
            args += ["--db", self.db]
        env = {k: v for k, v in os.environ.items() if k != "DERMADV_COORDINATOR_TOKEN"}
        self._log_fh = self.log.open("ab") if self.log is not None else None
        self.proc = subprocess.Popen(
            args,
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=self._log_fh if self._log_fh is not None else subprocess.PIPE,
            start_new_session=True,
            env={**env, "PYTHONUNBUFFERED": "1"},
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                text = self.log.read_text() if self.log is not None else self.proc.stderr.read().decode()
                raise AssertionError(f"server exited: {text}")
            try:
                if httpx.get(f"{self.base}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.kill()
        raise AssertionError("server did not start in time")

    def kill(self) -> None:
        """SIGKILL: no clean shutdown, as in a crash or power cut."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        if self.proc is not None and self.proc.stderr:
            self.proc.stderr.close()
        if getattr(self, "_log_fh", None) is not None:
            self._log_fh.close()
            self._log_fh = None
        self.proc = None

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.kill()


@contextlib.contextmanager
def throwaway_postgres():
    """A private PostgreSQL server (initdb + pg_ctl, Unix socket only) for the duration of a test.

    Skips the test when the PostgreSQL binaries, the 'postgres' system user (the server refuses to run
    as root) or the psycopg driver are not available."""
    import pytest

    pytest.importorskip("psycopg")
    bindir = next(
        (
            Path(d)
            for d in ("/usr/local/bin", "/usr/lib/postgresql/15/bin", "/usr/bin")
            if (Path(d) / "initdb").exists() and (Path(d) / "pg_ctl").exists()
        ),
        None,
    )
    if bindir is None or (os.geteuid() == 0 and shutil.which("runuser") is None):
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not installed")
    as_pg: list[str] = []
    root = Path(tempfile.mkdtemp(prefix="dermadv-pg-"))
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("no 'postgres' system user to run a PostgreSQL server as")
        as_pg = ["runuser", "-u", "postgres", "--"]
        os.chown(root, pw.pw_uid, pw.pw_gid)
    data = root / "data"
    try:
        subprocess.run(
            [*as_pg, str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "dermadv"],
            check=True,
            capture_output=True,
            timeout=120,
        )
        subprocess.run(
            [
                *as_pg,
                str(bindir / "pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(root / "log"),
                "-w",
                "-o",
                f"-k {root} -c listen_addresses='' -c fsync=on",
                "start",
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
        yield f"postgresql+psycopg://dermadv@/postgres?host={root}"
    finally:
        subprocess.run(
            [*as_pg, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(root, ignore_errors=True)


def simulate(
    path: Path,
    *,
    effect: bool,
    seed: int,
    n_readers: int = 8,
    n_per: int = 30,
    confidence: bool = True,
    short_reader: bool = False,
) -> Path:
    """Readers with a latent melanoma evidence ~ N(+-skill, 1); with ``effect`` adversarial melanomas
    look benign (evidence mean -0.5). Unmodified: n_per melanomas + n_per naevi; adversarial: n_per
    melanomas from two attacks."""
    rng = np.random.default_rng(seed)
    cases = [(f"um{i:03d}", "melanoma", "unmodified", "") for i in range(n_per)]
    cases += [(f"un{i:03d}", "naevus", "unmodified", "") for i in range(n_per)]
    cases += [
        (f"a{a}{i:03d}", "melanoma", "adversarial", a)
        for a in ("color", "rotation")
        for i in range(n_per // 2)
    ]
    rows = []
    for r in range(n_readers):
        skill = rng.normal(1.5, 0.3)
        for img, gt, cond, att in cases:
            mu = skill if gt == "melanoma" else -skill
            if effect and cond == "adversarial":
                mu = -0.5
            z = mu + rng.normal()
            rows.append(
                {
                    "reader_id": r + 1,
                    "reader": f"Dr {r + 1}",
                    "image": img,
                    "ground_truth": gt,
                    "condition": cond,
                    "attack": att,
                    "answer": "melanoma" if z > 0 else "naevus",
                    "confidence": int(np.clip(np.ceil(abs(z) * 1.5), 1, 5)) if confidence else "",
                }
            )
    if short_reader:
        for img, gt, cond, att in cases[:5] + cases[n_per : n_per + 3]:
            rows.append(
                {
                    "reader_id": 99,
                    "reader": "Dr Late",
                    "image": img,
                    "ground_truth": gt,
                    "condition": cond,
                    "attack": att,
                    "answer": gt,
                    "confidence": 5 if confidence else "",
                }
            )
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path
