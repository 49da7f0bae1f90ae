"""Procedurally generated, labelled "dermoscopy-like" images for the offline demo and smoke tests.

The repository ships no dermoscopic images (ISIC licences), so ``dermadv demo`` without ``--data``
draws a small labelled set here. It is NOT medical data: pigmented blobs on skin-toned backgrounds
where the melanoma class differs from the naevus class the way the ABC rules describe --
**A**symmetry (lobed, off-centre shape), **B**order irregularity (high-frequency radial noise) and
**C**olour variegation (several dark, blue-grey and red-brown patches instead of one brown). A model
that learns these is not a skin-cancer model; the numbers only show that the pipeline runs.

Output uses the ISIC 2019 layout (``ISIC_2019_Training_GroundTruth.csv`` with one-hot columns,
``ISIC_2019_Training_Metadata.csv`` with age/sex/site/lesion_id, JPEGs in ``images/``), so the same
loader that reads a real ISIC download reads it. Everything is deterministic given ``seed``.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from dermadv.fileio import atomic_target, atomic_write_text
from dermadv.labels import ISIC2019_COLUMNS

GROUND_TRUTH_CSV = "ISIC_2019_Training_GroundTruth.csv"
METADATA_CSV = "ISIC_2019_Training_Metadata.csv"
MARKER_FILE = "SYNTHETIC_DATA.txt"

SITES = ("anterior torso", "posterior torso", "lower extremity", "upper extremity", "head/neck")

#: Skin tones (RGB) the backgrounds are drawn around (light to medium Fitzpatrick types).
_SKIN_TONES = np.array(
    [[232, 190, 172], [222, 171, 145], [205, 150, 125], [190, 135, 110], [240, 200, 180]], dtype=float
)


@dataclass(frozen=True)
class SyntheticSet:
    """Where a generated set lies and what it holds."""

    root: Path
    n_melanoma: int
    n_naevus: int
    size: int
    seed: int

    @property
    def ground_truth_csv(self) -> Path:
        return self.root / GROUND_TRUTH_CSV


def _smooth_noise(rng: np.random.Generator, size: int, scale: int) -> np.ndarray:
    """Low-frequency noise in [0, 1]: random values on a coarse grid, bicubically upsampled."""
    coarse = rng.random((scale, scale)).astype(np.float32)
    img = Image.fromarray(coarse, mode="F").resize((size, size), Image.Resampling.BICUBIC)
    out = np.asarray(img, dtype=np.float32)
    return (out - out.min()) / max(float(out.max() - out.min()), 1e-6)


def _radius_profile(rng: np.random.Generator, theta: np.ndarray, melanoma: bool) -> np.ndarray:
    """Lesion radius (relative) as a function of angle: a smooth ellipse for naevi; for melanoma,
    low-order lobes (asymmetry) plus high-order harmonics (irregular, notched border)."""
    r = np.ones_like(theta)
    if melanoma:
        severity = rng.uniform(0.5, 1.0)  # some melanomas look almost benign
        for k in (1, 2, 3):
            r += severity * rng.uniform(0.06, 0.2) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
        for k in rng.choice(np.arange(6, 19), size=4, replace=False):
            r += severity * rng.uniform(0.01, 0.05) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    else:
        r += rng.uniform(0.0, 0.08) * np.cos(2 * theta + rng.uniform(0, 2 * np.pi))
        r += rng.uniform(0.0, 0.015) * np.cos(rng.integers(5, 9) * theta + rng.uniform(0, 2 * np.pi))
    return r


def make_lesion_image(rng: np.random.Generator, size: int, melanoma: bool) -> np.ndarray:
    """One synthetic lesion image, uint8 size x size x 3."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    # --- skin background: tone, slow shading, fine texture, dermoscope vignette
    tone = _SKIN_TONES[rng.integers(len(_SKIN_TONES))] + rng.normal(0, 6, 3)
    shade = 0.9 + 0.15 * _smooth_noise(rng, size, 4)[..., None]
    texture = rng.normal(0, 3.0, (size, size, 1))
    img = tone[None, None, :] * shade + texture
    cx = size / 2 + rng.normal(0, size * 0.04)
    cy = size / 2 + rng.normal(0, size * 0.04)
    dist = np.hypot(xx - size / 2, yy - size / 2) / (size / 2)
    img *= np.clip(1.15 - 0.35 * dist**2, 0.55, 1.0)[..., None]

    # --- lesion mask from an angular radius profile
    theta = np.arctan2(yy - cy, xx - cx)
    base_r = size * rng.uniform(0.22, 0.32) * (1.1 if melanoma else 1.0)
    aspect = rng.uniform(0.85, 1.0)
    rot = rng.uniform(0, np.pi)
    dx, dy = xx - cx, yy - cy
    u = dx * np.cos(rot) + dy * np.sin(rot)
    v = (-dx * np.sin(rot) + dy * np.cos(rot)) / aspect
    rho = np.hypot(u, v)
    radius = base_r * _radius_profile(rng, theta, melanoma)
    edge = rng.uniform(0.8, 2.0) if melanoma else rng.uniform(1.5, 3.0)  # sharp/abrupt vs soft fading border
    mask = 1.0 / (1.0 + np.exp((rho - radius) / edge))

    # --- pigment: one brown (naevus) or variegated patches (melanoma)
    browns = np.array([[125, 80, 55], [110, 70, 48], [145, 98, 70]])
    brown = browns[rng.integers(len(browns))] * rng.uniform(0.92, 1.08)
    pigment = np.broadcast_to(brown, (size, size, 3)).astype(np.float32).copy()
    pigment *= (0.9 + 0.2 * _smooth_noise(rng, size, 6))[..., None]
    if melanoma:
        dark = np.array([[45, 25, 20], [60, 35, 30], [105, 105, 125]])  # black, dark brown, blue-grey
        other = np.array([[140, 75, 65], [160, 120, 90], [70, 40, 30]])  # red-brown, tan, brown
        colours = [
            dark[rng.integers(len(dark))],
            *other[rng.choice(len(other), size=rng.integers(0, 3), replace=False)],
        ]
        for colour in colours:
            patch = _smooth_noise(rng, size, int(rng.integers(4, 9)))
            weight = 0.85 * np.clip((patch - rng.uniform(0.4, 0.6)) * 4, 0, 1)[..., None]
            pigment = pigment * (1 - weight) + colour * weight
    # pigment network: faint reticular lines
    period = rng.uniform(6, 10) * size / 256
    net = 0.5 + 0.5 * np.cos(2 * np.pi * xx / period) * np.cos(2 * np.pi * yy / period)
    pigment *= (0.92 + 0.08 * net)[..., None]
    # darker centre for naevi, random darker zones for melanoma
    core = np.clip(1 - rho / np.maximum(radius, 1), 0, 1)
    pigment *= (1 - (0.15 if not melanoma else 0.05) * core)[..., None]

    img = img * (1 - mask[..., None]) + pigment * mask[..., None]

    # --- a few hairs
    for _ in range(int(rng.integers(0, 3))):
        x0, y0 = rng.uniform(0, size, 2)
        ang = rng.uniform(0, np.pi)
        d = np.abs((xx - x0) * np.sin(ang) - (yy - y0) * np.cos(ang))
        hair = np.exp(-(d**2) / (2 * (0.6 * size / 256) ** 2))
        img = img * (1 - 0.6 * hair[..., None]) + 40 * 0.6 * hair[..., None]

    out = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    out = out.filter(ImageFilter.GaussianBlur(radius=0.6 * size / 256))
    return np.asarray(out, dtype=np.uint8)


def generate_dataset(
    out: str | Path,
    n_melanoma: int = 80,
    n_naevus: int = 80,
    size: int = 160,
    seed: int = 0,
    jpeg_quality: int = 92,
) -> SyntheticSet:
    """Write a synthetic melanoma/naevus set in the ISIC 2019 layout under ``out``.

    Deterministic: the same arguments give byte-identical files. Image ids are ``SYN_0000000``...
    (never ``ISIC_``, so they cannot be mistaken for real archive images). Each image is its own
    lesion (``lesion_id`` = ``SYN_L...``). A ``SYNTHETIC_DATA.txt`` marker says what the set is.
    """
    if n_melanoma < 1 or n_naevus < 1:
        raise ValueError(
            f"need at least one image per class, got n_melanoma={n_melanoma}, n_naevus={n_naevus}"
        )
    if not 32 <= size <= 1024:
        raise ValueError(f"size must be between 32 and 1024 pixels, got {size}")
    root = Path(out)
    images = root / "images"
    images.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    labels = np.array([1] * n_melanoma + [0] * n_naevus)
    rng.shuffle(labels)
    gt_rows, meta_rows = [], []
    for i, is_mel in enumerate(labels):
        image_id = f"SYN_{i:07d}"
        img_rng = np.random.default_rng([seed, i])
        img = make_lesion_image(img_rng, size, bool(is_mel))
        path = images / f"{image_id}.jpg"
        with atomic_target(path) as tmp:  # format given: the temporary name needs no .jpg
            Image.fromarray(img).save(tmp, format="JPEG", quality=jpeg_quality)
        onehot = {c: "0.0" for c in ISIC2019_COLUMNS}
        onehot["MEL" if is_mel else "NV"] = "1.0"
        gt_rows.append({"image": image_id, **onehot})
        age = int(img_rng.integers(4, 17)) * 5 + (10 if is_mel else 0)
        meta_rows.append(
            {
                "image": image_id,
                "age_approx": str(min(age, 85)),
                "anatom_site_general": SITES[int(img_rng.integers(len(SITES)))],
                "lesion_id": f"SYN_L{i:07d}",
                "sex": "male" if img_rng.random() < 0.5 else "female",
            }
        )
    for name, rows, cols in (
        (GROUND_TRUTH_CSV, gt_rows, ("image", *ISIC2019_COLUMNS)),
        (METADATA_CSV, meta_rows, ("image", "age_approx", "anatom_site_general", "lesion_id", "sex")),
    ):
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(cols))
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(root / name, buf.getvalue())
    info = {
        "synthetic": True,
        "generator": "dermadv.synthetic.generate_dataset",
        "n_melanoma": n_melanoma,
        "n_naevus": n_naevus,
        "size": size,
        "seed": seed,
        "jpeg_quality": jpeg_quality,
    }
    atomic_write_text(
        root / MARKER_FILE,
        "SYNTHETIC images drawn by dermadv.synthetic (not dermoscopy, not medical data).\n"
        "Melanoma-class blobs are asymmetric, irregularly bordered and variegated; naevus-class blobs\n"
        "are round, smooth and uniformly brown. Results on them only show the pipeline runs.\n"
        + json.dumps(info, indent=2)
        + "\n",
    )
    return SyntheticSet(root=root, n_melanoma=n_melanoma, n_naevus=n_naevus, size=size, seed=seed)


def is_synthetic(root: str | Path) -> bool:
    """Whether ``root`` (a dataset folder or a file inside one) was generated by this module."""
    p = Path(root)
    for cand in (p, *p.parents[:2]) if p.exists() else (p,):
        if (cand / MARKER_FILE).exists():
            return True
    return False
