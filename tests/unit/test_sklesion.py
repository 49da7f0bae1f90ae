"""The third-party model PyPI ``sklesion`` (Keras 3 Xception, run by Keras on PyTorch) without data: its
package facts and the metadata encoding. On real HAM10000 images: tests/integration/test_sklesion.py."""

from __future__ import annotations

import numpy as np
import pytest

from dermadv.errors import ModelError
from dermadv.models.registry import NAMED_MODELS
from dermadv.models.sklesion import SITE_GROUPS, SklesionMetadata, load_props, load_sklesion, package_dir
from models_support import SKLESION_CLASSES


def test_package_facts_match_the_adapter(sklesion):
    # what sklesion's own code does: decode_jpeg, then tf.image.resize to img_shape OUTSIDE the model
    source = (package_dir() / "model.py").read_text()
    assert "tf.image.decode_jpeg(" in source
    assert 'tf.image.resize(image, self.model_props["img_shape"])' in source
    assert 'meta["age"].fillna(self.model_props["age_mean"]' in source
    props = load_props()
    assert tuple(props["i_cl_map"][i] for i in range(7)) == SKLESION_CLASSES == sklesion.classes
    assert tuple(props["img_shape"]) == (254, 254) == sklesion.input_size
    assert tuple(sklesion.model.inputs[0].shape) == (None, 254, 254, 3)  # saved model expects resized images
    assert tuple(sklesion.model.inputs[1].shape) == (None, 10)
    assert sklesion.decoder == "tf" and sklesion.resize_method == "bilinear-noaa"
    assert sklesion.melanoma == {"mel"} and sklesion.benign == {"nv"}
    assert sklesion.white_box and sklesion.needs_metadata
    assert NAMED_MODELS.get("sklesion") is load_sklesion


def test_metadata_encoding():
    enc = SklesionMetadata()
    np.testing.assert_allclose(
        enc.encode_one({"age": 45, "sex": "male", "site": "back"}), [0, 1, 0, 0, 0, 0, 1, 0, 0.5, 0]
    )
    np.testing.assert_allclose(
        enc.encode_one({"age": 90.0, "sex": "female", "site": "head/neck"}), [1, 0, 0, 0, 1, 0, 0, 0, 1.0, 0]
    )  # ISIC anatom_site_general string
    missing = enc.encode_one({"age": None, "sex": None, "site": None})
    np.testing.assert_allclose(missing, [0, 0, 1, 0, 0, 0, 0, 1, 51.90180032733224 / 90, 1], rtol=1e-6)
    np.testing.assert_allclose(enc.encode_one(None), missing)
    assert enc.encode_one({"site": "Lower Extremity"})[5] == 1  # leg-or-genital; case-insensitive
    assert enc.encode_one({"site": "upper_extremity"})[3] == 1  # arm
    for site, group in SITE_GROUPS.items():
        assert group in ("arm", "head-or-neck", "leg-or-genital", "trunk", "unknown"), site
    with pytest.raises(ModelError, match="unknown anatomical site 'elbow'"):
        enc.encode_one({"site": "elbow"})
    with pytest.raises(ModelError, match="unknown sex 'x'"):
        enc.encode_one({"sex": "x"})
    with pytest.raises(ModelError, match="outside 0..120"):
        enc.encode_one({"age": -3})
    out = enc(None, 2)
    assert out.shape == (2, 10) and enc.describe()["defaults_used"]["no_metadata"] == 2
