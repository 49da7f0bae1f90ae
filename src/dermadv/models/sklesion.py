"""``--model sklesion``: the third-party PyPI package ``sklesion`` (Keras 3 Xception, HAM10000).

What the package does (sklesion 0.2.x, ``sklesion/model.py`` and ``model_props.pkl``), reproduced here
without TensorFlow:

- image: ``tf.image.decode_jpeg`` then ``tf.image.resize`` to 254 x 254 (bilinear, no antialias),
  given to the model as float 0..255; the model normalises internally (an adapted Normalization layer).
  The saved model's image input is fixed at 254 x 254: resizing happens outside the model.
  Here: decoder ``"tf"`` (simplejpeg, same IDCT/upsampling as TensorFlow) and resize ``"bilinear-noaa"``.
  One difference by design: the resized image is rounded to uint8, because attacks perturb exactly the
  uint8 array the model is given.
- metadata: a 10-vector = sex one-hot (female, male, unknown) + site one-hot (arm, head-or-neck,
  leg-or-genital, trunk, unknown) + age / 90 + age-missing flag (missing age = mean age 51.9 / 90).
- output: 7 softmax probabilities, classes akiec, bcc, bkl, df, mel, nv, vasc (``i_cl_map``).

The package expects site already grouped; HAM10000 ``localization`` and ISIC ``anatom_site_general``
strings are grouped by :data:`SITE_GROUPS`. Missing sex/site become "unknown" and missing age the
training mean (the package's own rule); the encoder counts how often each default was used and
:meth:`SklesionClassifier.describe` reports it.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import math
import os
import pickle
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dermadv.errors import MetadataError, MissingExtraError, ModelError
from dermadv.models.base import Metadata
from dermadv.models.keras_adapter import KerasClassifier, load_keras_file
from dermadv.models.registry import NAMED_MODELS

#: HAM10000 ``localization`` / ISIC ``anatom_site_general`` (lower case) -> sklesion's site group.
#: Acral sites ("acral", "palms/soles") could be hand (arm) or foot (leg): they map to "unknown".
SITE_GROUPS: dict[str, str] = {
    # HAM10000
    "upper extremity": "arm",
    "hand": "arm",
    "face": "head-or-neck",
    "ear": "head-or-neck",
    "neck": "head-or-neck",
    "scalp": "head-or-neck",
    "lower extremity": "leg-or-genital",
    "foot": "leg-or-genital",
    "genital": "leg-or-genital",
    "abdomen": "trunk",
    "back": "trunk",
    "chest": "trunk",
    "trunk": "trunk",
    "acral": "unknown",
    "unknown": "unknown",
    # ISIC archive / ISIC 2019 anatom_site_general
    "head/neck": "head-or-neck",
    "oral/genital": "leg-or-genital",
    "anterior torso": "trunk",
    "posterior torso": "trunk",
    "lateral torso": "trunk",
    "torso": "trunk",
    "palms/soles": "unknown",
    # the group names themselves
    "arm": "arm",
    "head-or-neck": "head-or-neck",
    "leg-or-genital": "leg-or-genital",
}
SEX_GROUPS: dict[str, str] = {
    "female": "female",
    "f": "female",
    "male": "male",
    "m": "male",
    "unknown": "unknown",
}


def package_dir() -> Path:
    """The installed ``sklesion`` package folder (importing it would import TensorFlow)."""
    spec = importlib.util.find_spec("sklesion")
    if spec is None or not spec.submodule_search_locations:
        raise MissingExtraError("sklesion", "keras", "The sklesion model")
    return Path(list(spec.submodule_search_locations)[0])


def package_version() -> str:
    try:
        return importlib.metadata.version("sklesion")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover
        return "unknown"


def load_props(directory: Path | None = None) -> dict[str, Any]:
    """The package's ``model_props.pkl`` (image size, age mean/max, class order, one-hot maps)."""
    path = (directory or package_dir()) / "model_props.pkl"
    try:
        with open(path, "rb") as fh:
            props = pickle.load(fh)
    except (OSError, pickle.UnpicklingError, EOFError) as exc:
        raise ModelError(f"{path}: cannot read sklesion's model properties ({exc})") from exc
    for key in ("img_shape", "age_mean", "age_max", "i_cl_map", "oh_map"):
        if key not in props:
            raise ModelError(f"{path}: sklesion model properties lack {key!r}; unsupported sklesion version")
    return props


def _missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and value.strip().lower() in ("", "nan", "none", "null")


class SklesionMetadata:
    """Encodes per-image metadata {"age", "sex", "site"} into sklesion's 10-vector; counts defaults."""

    spec = "dermadv.models.sklesion:SklesionMetadata"

    def __init__(self, props: Mapping[str, Any] | None = None) -> None:
        props = props or load_props()
        self.sex_codes = {k: list(v) for k, v in props["oh_map"]["sex"].items()}
        self.site_codes = {k: list(v) for k, v in props["oh_map"]["loc"].items()}
        self.age_mean = float(props["age_mean"])
        self.age_max = float(props["age_max"])
        for group in set(SITE_GROUPS.values()):
            if group not in self.site_codes:
                raise ModelError(f"sklesion's site groups {sorted(self.site_codes)} lack {group!r}")
        self.counts = {"images": 0, "no_metadata": 0, "age_default": 0, "sex_default": 0, "site_default": 0}

    @property
    def width(self) -> int:
        return len(self.sex_codes["unknown"]) + len(self.site_codes["unknown"]) + 2

    def validate(self, meta: Metadata) -> None:
        """MetadataError naming the value and what is accepted when ``meta`` cannot be encoded
        (nothing is counted: campaigns call this before running an image)."""
        self._parse(meta)

    def _parse(self, meta: Metadata) -> tuple[str | None, str | None, float | None]:
        """(sex group, site group, age), None where missing; MetadataError on a value it cannot take."""
        meta = meta or {}
        if not isinstance(meta, Mapping):
            raise MetadataError(
                f"sklesion metadata must be a mapping with age, sex, site; got {type(meta).__name__}"
            )
        # values as given (any type; checked below)
        sex_raw: Any = meta.get("sex")
        site_raw: Any = meta.get("site")
        age_raw: Any = meta.get("age")
        sex = site = None
        age: float | None = None
        if not _missing(sex_raw):
            key = str(sex_raw).strip().lower()
            if key not in SEX_GROUPS:
                raise MetadataError(f"sklesion: unknown sex {sex_raw!r}; expected female, male or unknown")
            sex = SEX_GROUPS[key]
        if not _missing(site_raw):
            key = " ".join(str(site_raw).strip().lower().replace("_", " ").split())
            if key not in SITE_GROUPS:
                raise MetadataError(
                    f"sklesion: unknown anatomical site {site_raw!r}; expected a HAM10000 localization or "
                    f"ISIC anatom_site_general value: {', '.join(sorted(SITE_GROUPS))}"
                )
            site = SITE_GROUPS[key]
        if not _missing(age_raw):
            try:
                age = float(age_raw)
            except (TypeError, ValueError) as exc:
                raise MetadataError(f"sklesion: age {age_raw!r} is not a number") from exc
            if not 0 <= age <= 120:
                raise MetadataError(f"sklesion: age {age} is outside 0..120 years")
        return sex, site, age

    def encode_one(self, meta: Metadata) -> np.ndarray:
        """One image's 10-vector. Unknown strings raise MetadataError (a ModelError and a DataError)
        naming the accepted values; missing values take the documented defaults, which are counted."""
        sex, site, age = self._parse(meta)
        if sex is None:
            sex = "unknown"
            self.counts["sex_default"] += 1
        if site is None:
            site = "unknown"
            self.counts["site_default"] += 1
        flag = 0.0
        if age is None:
            age, flag = self.age_mean, 1.0
            self.counts["age_default"] += 1
        return np.asarray(
            self.sex_codes[sex] + self.site_codes[site] + [age / self.age_max, flag], np.float32
        )

    def __call__(self, metadata: Sequence[Metadata] | None, n: int) -> np.ndarray:
        self.counts["images"] += n
        if metadata is None:
            self.counts["no_metadata"] += n
            metadata = [None] * n
        if len(metadata) != n:
            raise ModelError(f"sklesion: {len(metadata)} metadata entries for {n} images")
        return np.stack([self.encode_one(m) for m in metadata])

    def describe(self) -> dict[str, Any]:
        return {
            "encoder": self.spec,
            "vector": "sex one-hot (female, male, unknown) + site one-hot "
            f"({', '.join(self.site_codes)}) + age/{self.age_max:g} + age-missing flag",
            "defaults": {
                "sex": "unknown",
                "site": "unknown",
                "age": f"{self.age_mean:.4f} (training mean) with missing flag 1",
            },
            "site_groups": SITE_GROUPS,
            "defaults_used": dict(self.counts),
        }


PREPROCESSING = (
    "decode like tf.io.decode_jpeg (simplejpeg fastdct=True, fastupsample=False), bilinear resize without "
    "antialias to 254x254, rounded to uint8; float 0..255 into the model, which normalises internally"
)


def sklesion_notes(description: Mapping[str, Any]) -> dict[str, Any]:
    """Package, preprocessing and how often metadata defaults were used, for describe()."""
    notes: dict[str, Any] = {"package": f"sklesion {package_version()}", "preprocessing": PREPROCESSING}
    used = description.get("metadata", {}).get("defaults_used", {})
    if used.get("images"):
        notes["metadata_defaults_note"] = (
            f"{used['no_metadata']} of {used['images']} images had no metadata; defaults used for age "
            f"{used['age_default']}, sex {used['sex_default']}, site {used['site_default']} times"
        )
    return notes


class SklesionClassifier(KerasClassifier):
    """sklesion's Keras model with its preprocessing; white-box through Keras on PyTorch."""

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update(sklesion_notes(d))
        return d


def _check_props(props: Mapping[str, Any]) -> tuple[tuple[str, ...], tuple[int, int]]:
    i_cl = props["i_cl_map"]
    classes = tuple(str(i_cl[i]) for i in sorted(i_cl))
    size = tuple(int(v) for v in np.asarray(props["img_shape"]).ravel()[:2])
    return classes, (size[0], size[1])


@NAMED_MODELS.register("sklesion", white_box=True, extra="keras")
def load_sklesion(
    device: str | None = None, decoder: str = "tf", batch_size: int | str | None = None
) -> SklesionClassifier:
    """The sklesion model run by Keras 3 on PyTorch (white-box). Options: decoder, batch_size."""
    directory = package_dir()
    props = load_props(directory)
    classes, size = _check_props(props)
    model = load_keras_file(directory / "model.keras")
    clf = SklesionClassifier(
        model,
        classes,
        name="sklesion",
        source=str(directory / "model.keras"),
        input_size=size,
        normalization=("none", None, None),
        output="probs",
        decoder=decoder,
        resize_method="bilinear-noaa",
        metadata_encoder=SklesionMetadata(props),
        batch_size=int(batch_size or 8),
    )
    return clf


def cache_dir() -> Path:
    """Where derived model files (e.g. sklesion's ONNX export) live: $DERMADV_CACHE or ~/.cache/dermadv."""
    return Path(os.environ.get("DERMADV_CACHE") or Path.home() / ".cache" / "dermadv")


@NAMED_MODELS.register("sklesion-onnx", white_box=False, extra="onnx")
def load_sklesion_onnx(
    device: str | None = None,
    decoder: str = "tf",
    batch_size: int | str | None = None,
    threads: int | str | None = None,
):  # noqa: ANN201 - OnnxClassifier (imported lazily)
    """sklesion exported once to ONNX (cached) and run by onnxruntime: faster, black-box.

    The export (about 20 s) is verified against the Keras model and cached under :func:`cache_dir`.
    """
    from dermadv.models.export import FORMAT_VERSION, export_onnx
    from dermadv.models.onnx_adapter import OnnxClassifier

    src = package_dir() / "model.keras"
    path = cache_dir() / f"sklesion-{package_version()}-{src.stat().st_size}-v{FORMAT_VERSION}.onnx"
    if not path.is_file():
        keras_model = load_sklesion(decoder=decoder)
        export_onnx(keras_model, path)
        check = OnnxClassifier.from_file(path)
        size = (2, *keras_model.input_size, 3)
        images = np.random.default_rng(0).integers(0, 256, size=size, dtype=np.uint8)
        diff = np.abs(keras_model.predict_proba(images) - check.predict_proba(images)).max()
        if diff > 1e-4:
            path.unlink(missing_ok=True)
            raise ModelError(f"sklesion's ONNX export differs from the Keras model by {diff:.3g}; not cached")
    clf = OnnxClassifier.from_file(
        path,
        device=device,
        decoder=decoder,
        batch_size=batch_size or 8,
        threads=threads,
        name="sklesion-onnx",
    )
    encoder = clf.metadata_encoder

    def notes(description: dict[str, Any]) -> dict[str, Any]:
        # OnnxClassifier.describe adds "metadata" after the notes: give the encoder's counts here, so that
        # sklesion-onnx states the metadata defaults it used, as sklesion does
        describe = getattr(encoder, "describe", None)
        metadata = describe() if callable(describe) else {}
        return sklesion_notes({**description, "metadata": metadata})

    clf.notes = notes
    return clf
