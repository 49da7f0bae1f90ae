"""The HTML report as a PDF (for a validation dossier), printed by headless Chromium.

:func:`html_to_pdf` runs ``chromium --headless --print-to-pdf`` on the self-contained report (every
figure is embedded, so nothing is fetched); the report's ``@media print`` rules hide the navigation
and keep figures whole. :func:`pdf_facts` counts the pages and embedded images of a PDF by reading
its objects (``/Type /Page``, ``/Subtype /Image``), enough to check that every figure made it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import zlib
from pathlib import Path

from dermadv.errors import DermadvError

#: Where Chromium is looked for ($DERMADV_CHROMIUM first, then these names on PATH).
CHROMIUM_NAMES: tuple[str, ...] = ("chromium", "chromium-browser", "google-chrome", "chrome")
CHROMIUM_FLAGS: tuple[str, ...] = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-pdf-header-footer",
)


def find_chromium() -> str:
    """The Chromium executable (DermadvError saying how to get one when there is none)."""
    env = os.environ.get("DERMADV_CHROMIUM")
    if env:
        if not Path(env).is_file():
            raise DermadvError(f"$DERMADV_CHROMIUM={env}: no such file")
        return env
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    raise DermadvError(
        "PDF output needs Chromium (apt-get install chromium, or set $DERMADV_CHROMIUM to the browser)"
    )


def html_to_pdf(html: str | Path, pdf: str | Path, timeout: float = 180.0) -> Path:
    """Print the HTML file ``html`` to ``pdf`` with headless Chromium (A4, backgrounds); returns ``pdf``."""
    src = Path(html).resolve()
    if not src.is_file():
        raise DermadvError(f"{src}: no such HTML report")
    out = Path(pdf).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="dermadv-pdf-") as profile:
        tmp = Path(profile) / "report.pdf"
        cmd = [
            find_chromium(),
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            f"--print-to-pdf={tmp}",
            src.as_uri(),
        ]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise DermadvError(f"Chromium did not print {src} within {timeout:.0f} s") from None
        if proc.returncode != 0 or not tmp.is_file() or tmp.stat().st_size == 0:
            tail = (proc.stderr or "").strip().splitlines()[-3:]
            raise DermadvError(
                f"Chromium could not print {src} to PDF (exit {proc.returncode}): {' | '.join(tail)}"
            )
        from dermadv.fileio import atomic_write_bytes

        atomic_write_bytes(out, tmp.read_bytes())
    return out


_STREAM = re.compile(rb"stream\r?\n(.*?)\r?\nendstream", re.S)


def _object_text(data: bytes) -> bytes:
    """The PDF's bytes plus its Flate-compressed streams inflated (object streams hold dictionaries)."""
    parts = [data]
    for m in _STREAM.finditer(data):
        try:
            parts.append(zlib.decompress(m.group(1)))
        except zlib.error:
            continue
    return b"\n".join(parts)


def pdf_facts(pdf: str | Path) -> dict[str, int]:
    """``{"pages": n, "images": k, "page_count": c}``: page objects and image XObjects in a PDF file,
    and the page count its page tree declares (the root ``/Pages`` node's ``/Count``; 0 if unread)."""
    data = Path(pdf).read_bytes()
    if not data.startswith(b"%PDF-"):
        raise DermadvError(f"{pdf}: not a PDF file")
    text = _object_text(data)
    pages = len(re.findall(rb"/Type\s*/Page(?![s\w])", text))
    images = len(re.findall(rb"/Subtype\s*/Image\b", text))
    counts = [int(c) for c in re.findall(rb"/Type\s*/Pages\b[^>]*?/Count\s+(\d+)", text)]
    counts += [int(c) for c in re.findall(rb"/Count\s+(\d+)[^>]*?/Type\s*/Pages\b", text)]
    return {"pages": pages, "images": images, "page_count": max(counts, default=0)}
