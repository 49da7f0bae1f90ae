"""Issue 16's "Show it": build each bad input in a temporary folder, run it against the real CLI
(``python -m dermadv.cli``, a new process each) and print a table of case, exit code and the first line
of what the command said about it. Not collected by pytest (no ``test_`` prefix); run it by hand:

    PYTHONPATH=src python tests/fuzz_cli.py [--sklesion]

``--sklesion`` adds the cases that load the sklesion model (Keras; slower). A full disk is simulated
in the child process (``os.fsync`` raises ENOSPC): everything else is a real file on disk.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
MODEL = "models_support:mean_colour_probs"  # a transparent callable model, PIL decoder, 48 x 48 input

#: A child that runs the CLI with os.fsync failing as on a full disk.
FULL_DISK = (
    "import errno, os, runpy, sys\n"
    "def full(fd): raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))\n"
    "os.fsync = full\n"
    "sys.argv = ['dermadv', *sys.argv[1:]]\n"
    "runpy.run_module('dermadv.cli', run_name='__main__')\n"
)


def jpeg(size: int = 64, seed: int = 0, exif_orientation: int | None = None) -> bytes:
    arr = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    buf = io.BytesIO()
    kwargs = {}
    if exif_orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        kwargs["exif"] = exif
    Image.fromarray(arr).save(buf, "JPEG", quality=90, **kwargs)
    return buf.getvalue()


def bomb() -> bytes:
    data = bytearray(jpeg(16))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = (20000).to_bytes(2, "big") * 2
    return bytes(data)


def flipped(n: int = 30) -> bytes:
    data = bytearray(jpeg(64))
    sos = data.index(b"\xff\xda")
    start = sos + 2 + int.from_bytes(data[sos + 2 : sos + 4], "big")
    for i in np.random.default_rng(0).choice(np.arange(start, len(data) - 2), size=n, replace=False):
        data[i] ^= 0xFF if data[i] != 0x00 else 0x5A
    return bytes(data)


def png16() -> bytes:
    wide = (np.arange(160 * 160, dtype=np.uint32).reshape(160, 160) % 65536).astype(np.uint16)
    buf = io.BytesIO()
    Image.fromarray(wide).save(buf, "PNG")
    return buf.getvalue()


def folders(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


def with_good(root: Path, files: dict[str, bytes]) -> Path:
    """``files`` plus one good melanoma and two good naevi."""
    good = {
        "mel/ISIC_9000001.jpg": jpeg(160, 1),
        "nv/ISIC_9000002.jpg": jpeg(160, 2),
        "nv/ISIC_9000003.jpg": jpeg(160, 3),
    }
    return folders(root, {**good, **files})


def isic2019_bad_metadata(root: Path) -> Path:
    rows = [
        ("ISIC_9000001", "MEL", "999", "moon", "banana"),
        ("ISIC_9000002", "NV", "-5", "anterior torso", "female"),
        ("ISIC_9000003", "MEL", "45", "head/neck", "male"),
        ("ISIC_9000004", "NV", "50", "posterior torso", "female"),
    ]
    cols = ["MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK"]
    gt = ["image," + ",".join(cols)] + [
        f"{r[0]}," + ",".join("1" if c == r[1] else "0" for c in cols) for r in rows
    ]
    meta = ["image,age_approx,anatom_site_general,lesion_id,sex"] + [
        f"{r[0]},{r[2]},{r[3]},L{i},{r[4]}" for i, r in enumerate(rows)
    ]
    root.mkdir(parents=True, exist_ok=True)
    (root / "ISIC_2019_Training_GroundTruth.csv").write_text("\n".join(gt) + "\n")
    (root / "ISIC_2019_Training_Metadata.csv").write_text("\n".join(meta) + "\n")
    for i, r in enumerate(rows):
        folders(root, {f"images/{r[0]}.jpg": jpeg(256, i)})
    return root


@dataclass
class Case:
    name: str
    build: Callable[[Path], list[str]]  # builds the input under a folder; returns the CLI arguments
    pick: str = ""  # regex: the output line to show (default: the first line of stderr, else stdout)
    full_disk: bool = False
    sklesion: bool = False
    after: Callable[[Path], str] | None = None  # what to show instead, read from the files it wrote


def _error_row(folder: Path) -> str:
    import sqlite3

    with sqlite3.connect(folder / "run" / "results.sqlite") as conn:
        rows = conn.execute("SELECT image_id, outcome, error FROM results ORDER BY image_id").fetchall()
    return "; ".join(
        f"{i} {o}" + (f" ({(e or '').split(': ', 1)[-1][:60]}...)" if o == "error" else "")
        for i, o, e in rows
    )


def _check(files: dict[str, bytes], *extra: str) -> Callable[[Path], list[str]]:
    return lambda d: ["data", "check", str(with_good(d / "data", files)), *extra]


def _evaluate(files: dict[str, bytes], out: bool = False) -> Callable[[Path], list[str]]:
    def build(d: Path) -> list[str]:
        args = ["evaluate", "--model", MODEL, "--data", str(with_good(d / "data", files)), "--no-progress"]
        return args + (["--out", str(d / "out")] if out else [])

    return build


def _attack(files: dict[str, bytes]) -> Callable[[Path], list[str]]:
    def build(d: Path) -> list[str]:
        data = with_good(d / "data", files)
        args = ["attack", "--model", MODEL, "--data", str(data), "--out", str(d / "run")]
        return args + ["--attacks", "color", "--popsize", "4", "--max-generations", "1", "--no-progress"]

    return build


def _non_utf8(d: Path) -> list[str]:
    root = with_good(d / "data", {})
    (root / "labels.csv").write_bytes("image,MEL,NV\nISIC_1,1,0\n".encode("utf-16"))
    for sub in ("mel", "nv"):
        for f in (root / sub).iterdir():
            f.unlink()
        (root / sub).rmdir()
    return ["data", "check", str(root)]


def _symlink_loop(d: Path) -> list[str]:
    root = with_good(d / "data", {})
    os.symlink(root / "loop", root / "loop")
    return ["data", "check", str(root)]


def _unwritable_out(d: Path) -> list[str]:
    # /sys refuses new folders even to root (EPERM), where a chmod 0500 folder would not
    return ["data", "split", str(with_good(d / "data", {})), "--out", "/sys/dermadv-fuzz/split.csv"]


def _env() -> dict[str, str]:
    path = [str(REPO / "src"), str(TESTS), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(path)}


def _dermadv(*args: str) -> None:
    """Run the CLI as set-up for a case (it must succeed)."""
    subprocess.run([sys.executable, "-m", "dermadv.cli", *args], check=True, capture_output=True, env=_env())


def _many(d: Path) -> Path:
    """Eight good images per class: enough for a split with a validation subset."""
    files = {
        f"{c}/ISIC_9{k + 1}0010{i}.jpg": jpeg(96, 10 * k + i)
        for k, c in enumerate(("mel", "nv"))
        for i in range(8)
    }
    return folders(d / "data", files)


def _edited_split(d: Path) -> list[str]:
    data, split = _many(d), d / "split.csv"
    _dermadv("data", "split", str(data), "--out", str(split), "--seed", "0")
    lines = split.read_text().splitlines()
    i = next(k for k, ln in enumerate(lines) if ",train" in ln)
    lines[i] = lines[i].replace(",train", ",val")  # one train row moved to val by hand
    split.write_text("\n".join(lines) + "\n")
    return [
        "evaluate",
        "--model",
        MODEL,
        "--data",
        str(data),
        "--split",
        str(split),
        "--subset",
        "val",
        "--no-progress",
    ]


def _replaced_image(d: Path) -> list[str]:
    data = _many(d)
    args = ["evaluate", "--model", MODEL, "--data", str(data), "--out", str(d / "out"), "--no-progress"]
    _dermadv(*args)
    (data / "mel" / "ISIC_9100100.jpg").write_bytes((data / "nv" / "ISIC_9200101.jpg").read_bytes())
    return args


#: Processes holding a run folder for the "second writer" case (ended when the script ends).
HOLDERS: list[subprocess.Popen[bytes]] = []


def _held_out(d: Path) -> list[str]:
    out = d / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom dermadv.runs.lock import hold_run\n"
         f"with hold_run({str(out)!r}):\n    print('held', flush=True)\n    time.sleep(120)\n"],
        stdout=subprocess.PIPE, env=_env(),
    )  # fmt: skip
    HOLDERS.append(holder)
    assert holder.stdout is not None and holder.stdout.readline().strip() == b"held"
    return _attack({})(d)


CASES: list[Case] = [
    Case("clean dataset", _check({}), pick=r"no problems"),
    Case("bomb JPEG: data check", _check({"mel/ISIC_1.jpg": bomb()}), pick=r"\[unreadable_image\]"),
    Case("bomb JPEG: evaluate", _evaluate({"mel/ISIC_1.jpg": bomb()})),
    Case("bomb JPEG: attack (rows stored)", _attack({"mel/ISIC_1.jpg": bomb()}), after=_error_row),
    Case("16-bit PNG: data check", _check({"nv/ISIC_2.png": png16()}), pick=r"problem|images:"),
    Case("flipped scan bytes: check", _check({"mel/ISIC_3.jpg": flipped()}), pick=r"\[unreadable_image\]"),
    Case(
        "flipped scan bytes: check --model (pil)",
        _check({"mel/ISIC_3.jpg": flipped()}, "--model", MODEL),
        pick=r"\[unreadable_image\]",
    ),
    Case("1x1 image: data check", _check({"mel/ISIC_4.jpg": jpeg(1)}), pick=r"\[small_image\]"),
    Case(
        "EXIF rotated: data check", _check({"mel/ISIC_5.jpg": jpeg(160, 5, 6)}), pick=r"\[exif_orientation\]"
    ),
    Case("full disk: evaluate --out", _evaluate({}, out=True), full_disk=True),
    Case(
        "full disk: data split",
        lambda d: [
            "data",
            "split",
            str(with_good(d / "data", {})),
            "--out",
            str(d / "s.csv"),
            "--all-classes",
        ],
        full_disk=True,
    ),  # fmt: skip
    Case("full disk: attack --out", _attack({}), full_disk=True),
    Case("unwritable --out: data split", _unwritable_out),
    Case(
        "metadata 999/banana/moon: check",
        lambda d: ["data", "check", str(isic2019_bad_metadata(d / "data"))],
        pick=r"\[bad_metadata\]",
    ),  # fmt: skip
    Case("non-UTF-8 label CSV", _non_utf8, pick=r"\[invalid_dataset\]"),
    Case("symlink loop beside class folders", _symlink_loop, pick=r"^layout"),
    Case("edited split (a train row moved to val)", _edited_split),
    Case("replaced image, rerun: evaluate --out", _replaced_image, pick=r"changed since|predicted in"),
    Case("second writer on a held --out: attack", _held_out),
    Case(
        "metadata 999/banana/moon: evaluate sklesion-onnx",
        lambda d: [
            "evaluate",
            "--model",
            "sklesion-onnx",
            "--data",
            str(isic2019_bad_metadata(d / "data")),
            "--no-progress",
        ],  # fmt: skip
        pick=r"^metadata:",
        sklesion=True,
    ),
]


def run_case(case: Case, tmp: Path) -> tuple[int, str]:
    folder = tmp / re.sub(r"\W+", "_", case.name)
    folder.mkdir()
    args = case.build(folder)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(TESTS), os.environ.get("PYTHONPATH", "")]),
    }
    cmd = (
        [sys.executable, "-c", FULL_DISK, *args]
        if case.full_disk
        else [sys.executable, "-m", "dermadv.cli", *args]
    )
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=folder)
    progress = re.compile(r"\d+%\|")  # tqdm bars
    lines = [ln.strip() for ln in (res.stderr + "\n" + res.stdout).splitlines() if ln.strip()]
    lines = [ln for ln in lines if not progress.search(ln)]
    err_lines = [ln for ln in lines if ln in res.stderr and "warning" not in ln.lower()[:12]]
    if case.pick:
        hit = next((ln for ln in lines if re.search(case.pick, ln)), None)
        line = hit or (lines[0] if lines else "")
    else:
        line = (err_lines or lines or [""])[0]
    if case.after is not None and res.returncode == 0:
        line = case.after(folder)
    if "Traceback" in res.stderr:
        line = "TRACEBACK: " + res.stderr.strip().splitlines()[-1]
    return res.returncode, line.replace(str(folder), "<tmp>")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sklesion", action="store_true", help="also run the cases that load sklesion")
    parser.add_argument("--width", type=int, default=160, help="cut each message to this many characters")
    opts = parser.parse_args()
    print(f"{'case':<50} {'exit':>4}  first line of the message")
    with tempfile.TemporaryDirectory(prefix="dermadv-fuzz-") as tmp:
        try:
            for case in CASES:
                if case.sklesion and not opts.sklesion:
                    continue
                code, line = run_case(case, Path(tmp))
                print(f"{case.name:<50} {code:>4}  {line[: opts.width]}", flush=True)
        finally:
            for holder in HOLDERS:
                holder.kill()
                holder.wait()


if __name__ == "__main__":
    main()
