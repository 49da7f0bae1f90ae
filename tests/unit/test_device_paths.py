"""The device path: perturbations computed on the model's device (``Perturbation.transform_tensor``),
models scoring tensors that never leave it (``TorchModuleClassifier.predict_tensor``), the inference
settings (precision, channels-last, compile with its fallback, memory-fitted batch) and an attack run
on the device path against the numpy path.

Every registered perturbation is compared with its numpy path bit for bit on each device present: the
CPU always, a CUDA GPU when there is one (there, float kernels -- ``grid_sample``, torchvision's hue
and contrast -- are allowed one grey level, as their docstrings state; table look-ups and pixel writes
must stay exact)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dermadv.attacks import ATTACKS
from dermadv.data.images import resize_uint8
from dermadv.errors import ModelError
from dermadv.models.accel import AcceleratedForward, InferenceSettings, memory_batch_limit
from dermadv.models.base import TorchModuleClassifier
from dermadv.perturb import PERTURBATIONS
from dermadv.synthetic import make_lesion_image

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
#: native on the device and exact there (the same host-computed tables or integer writes)
EXACT = {"color", "shift", "brightness", "pixel"}


def _lesion(seed: int, size: tuple[int, int]) -> np.ndarray:
    return resize_uint8(make_lesion_image(np.random.default_rng(seed), max(size), True), size)


def _rows(pert, shape: tuple[int, ...], n: int, seed: int) -> np.ndarray:
    """``n`` parameter rows drawn uniformly from the perturbation's space (integers rounded)."""
    rng = np.random.default_rng(seed)
    space = pert.space(shape)
    rows = np.empty((n, len(space)))
    for j, p in enumerate(space):
        rows[:, j] = rng.uniform(p.low, p.high, n)
        if p.integer:
            rows[:, j] = np.rint(rows[:, j])
    return rows


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", PERTURBATIONS.names())
def test_device_path_matches_the_numpy_path(name: str, device: str) -> None:
    pert = PERTURBATIONS.create(name)
    image = _lesion(0, (40, 56))  # H != W catches axis mix-ups
    rows = _rows(pert, image.shape, 5, seed=len(name))
    one = torch.from_numpy(image[None].copy()).to(device)
    got = pert.transform_tensor(one, rows)  # one image, P rows
    assert got.dtype == torch.uint8 and got.device.type == device and tuple(got.shape) == (5, 40, 56, 3)
    want = pert.apply(image, rows)
    images = np.stack([image, image[::-1], image[:, ::-1], image, image[::-1]])
    got_n = pert.transform_tensor(torch.from_numpy(images.copy()).to(device), rows)  # a row per image
    want_n = pert.transform(images, rows)
    for g, w in ((got, want), (got_n, want_n)):
        diff = np.abs(g.cpu().numpy().astype(int) - w.astype(int))
        if device == "cpu" or name in EXACT:
            assert diff.max() == 0, f"{name} on {device}: {int((diff > 0).sum())} bytes differ"
        else:
            assert diff.max() <= 1, f"{name} on {device}: differs by {diff.max()} grey levels"
    assert np.array_equal(image, one[0].cpu().numpy())  # the input is not written


def test_native_flags_and_bad_tensors() -> None:
    native = {n for n in PERTURBATIONS.names() if PERTURBATIONS.create(n).device_native}
    assert {
        "color",
        "shift",
        "brightness",
        "pixel",
        "rotation",
        "hue",
        "contrast",
        "gaussian_blur",
        "defocus_blur",
        "motion_blur",
        "zoom_blur",
        "tilt",
        "scale",
        "elastic_transform",
        "black_corner",
        "contrast_c",
        "hsv_brightness",
        "brightness_up",
        "brightness_down",
        "illumination_gradient",
    } <= native
    pert = PERTURBATIONS.create("color")
    with pytest.raises(ValueError, match="uint8 N x H x W x 3 tensor"):
        pert.transform_tensor(torch.zeros((2, 3, 8, 8), dtype=torch.uint8), np.ones((1, 3)))
    with pytest.raises(TypeError, match="torch uint8"):
        pert.transform_tensor(np.zeros((1, 8, 8, 3), np.uint8), np.ones((1, 3)))
    with pytest.raises(ValueError, match="3 images but 2 parameter rows"):
        pert.transform_tensor(torch.zeros((3, 8, 8, 3), dtype=torch.uint8), np.ones((2, 3)))


class _Tiny(torch.nn.Module):
    """A small conv net: enough to exercise layouts, precision and compile quickly."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.head = torch.nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.conv(x)).mean(dim=(2, 3)))


def _model(**settings: str) -> TorchModuleClassifier:
    return TorchModuleClassifier(
        _Tiny(),
        ("MEL", "NV", "BCC"),
        (32, 32),
        name="tiny",
        device="cpu",
        batch_size=4,
        inference=InferenceSettings(**settings),
    )


def test_predict_tensor_equals_predict_proba_and_validates() -> None:
    model = _model()
    images = np.stack([_lesion(i, (32, 32)) for i in range(6)])
    want = model.predict_proba(images)
    got = model.predict_tensor(torch.from_numpy(images))
    np.testing.assert_array_equal(got, want)
    assert got.dtype == np.float64 and got.shape == (6, 3)
    with pytest.raises(ModelError, match=r"uint8 N x 32 x 32 x 3 tensor"):
        model.predict_tensor(torch.zeros((1, 3, 32, 32), dtype=torch.uint8))
    assert model.describe()["inference"] == {
        "precision": "fp32",
        "channels_last": False,
        "compile": False,
        "cuda_graphs": False,
    }


def test_settings_resolve_per_device_and_validate() -> None:
    cpu = InferenceSettings().resolve(torch.device("cpu"))
    assert (cpu.precision, cpu.channels_last, cpu.compile, cpu.cuda_graphs) == ("fp32", False, False, False)
    forced = InferenceSettings(precision="bf16", channels_last="on", compile="off").resolve(
        torch.device("cpu")
    )
    assert forced.precision == "bf16" and forced.channels_last and not forced.compile
    with pytest.raises(ValueError, match="precision must be one of"):
        InferenceSettings(precision="int4")
    with pytest.raises(ValueError, match="compile must be one of"):
        InferenceSettings(compile="maybe")
    assert InferenceSettings(compile=True).compile == "on"  # booleans and yes/no spellings are accepted


def test_channels_last_and_bf16_stay_close_to_fp32() -> None:
    images = np.stack([_lesion(i, (32, 32)) for i in range(4)])
    ref = _model().predict_proba(images)
    cl = _model(channels_last="on")
    assert cl.module.conv.weight.is_contiguous(memory_format=torch.channels_last)
    np.testing.assert_allclose(cl.predict_proba(images), ref, atol=1e-5)
    bf16 = _model(precision="bf16").predict_proba(images)  # CPU autocast in bfloat16
    assert np.abs(bf16 - ref).max() < 0.05 and np.allclose(bf16.sum(axis=1), 1)


def test_compile_falls_back_cleanly_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(module, **kw):  # what a machine without a working compiler gives on the first call
        def call(x):
            raise RuntimeError("no C++ compiler found")

        return call

    monkeypatch.setattr(torch, "compile", broken)
    model = _model(compile="on")
    images = np.stack([_lesion(i, (32, 32)) for i in range(3)])
    np.testing.assert_array_equal(model.predict_proba(images), _model().predict_proba(images))
    d = model.describe()["inference"]
    assert d["compile"] is False and "no C++ compiler found" in d["compile_fallback"]


def test_static_shapes_pad_the_last_batch() -> None:
    model = _model()
    seen: list[int] = []
    forward = model.accel

    class Recording:
        module = forward.module
        static_shapes = True

        def autocast(self):
            return forward.autocast()

        def __call__(self, x):
            seen.append(x.shape[0])
            return forward(x)

    model.accel = Recording()  # type: ignore[assignment]
    images = np.stack([_lesion(i, (32, 32)) for i in range(6)])
    got = model.predict_proba(images)  # batch 4: 4 + (2 padded to 4)
    assert seen == [4, 4] and got.shape == (6, 3)
    np.testing.assert_allclose(got, _model().predict_proba(images), atol=1e-6)


def test_memory_batch_limit_is_none_off_cuda() -> None:
    model = _model()
    assert memory_batch_limit(model._eager_probs, (32, 32, 3), torch.device("cpu")) is None
    assert (
        TorchModuleClassifier(
            _Tiny(), ("MEL", "NV", "BCC"), (32, 32), device="cpu", batch_size="auto"
        ).batch_size
        == 32
    )
    with pytest.raises(ModelError, match="batch_size must be a positive integer or 'auto'"):
        TorchModuleClassifier(_Tiny(), ("MEL", "NV", "BCC"), (32, 32), device="cpu", batch_size=0)
    assert isinstance(model.accel, AcceleratedForward)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_memory_batch_limit_on_cuda() -> None:
    model = TorchModuleClassifier(_Tiny(), ("MEL", "NV", "BCC"), (32, 32), device="cuda", batch_size="auto")
    assert 1 <= model.batch_size <= 1024 and model.batch_size & (model.batch_size - 1) == 0


@pytest.mark.parametrize("attack", ["color", "rotation", "pixel"])
def test_attack_on_the_device_path_equals_the_numpy_path(attack: str) -> None:
    model = _model()
    images = np.stack([_lesion(i, (32, 32)) for i in range(4)])
    mel, ben = model.group_probs(model.predict_proba(images))
    dirs = ["mel->nv" if m > b else "nv->mel" for m, b in zip(mel, ben, strict=True)]  # all attacked
    opts = {"maxiter": 2, "popsize": 2, "chunk": 4, "threshold": 0.9}
    kw = {"image_ids": [str(i) for i in range(4)], "direction": dirs, "seeds": [1, 2, 3, 4]}
    host = ATTACKS.create(attack, device_path="off", **opts).run_many(model, images, **kw)
    dev_attack = ATTACKS.create(attack, device_path="on", **opts)
    assert dev_attack.on_device(model) and "device_path" not in dev_attack.describe()
    dev = dev_attack.run_many(model, images, **kw)
    assert all(h.outcome != "misclassified" for h in host) and sum(h.queries for h in host) > 4 * 5
    for h, d in zip(host, dev, strict=True):
        assert (h.outcome, h.queries, h.params, h.first_success_query) == (
            d.outcome,
            d.queries,
            d.params,
            d.first_success_query,
        )
        np.testing.assert_array_equal(h.adversarial, d.adversarial)
        np.testing.assert_array_equal(h.final_probs, d.final_probs)


def test_device_path_auto_is_off_on_the_cpu_and_on_needs_a_tensor_model() -> None:
    from dermadv.attacks.base import AttackConfigError
    from dermadv.models.callable_adapter import CallableClassifier

    assert not ATTACKS.create("color").on_device(_model())  # auto: the CPU keeps the numpy path
    fn = CallableClassifier(lambda x: np.full((len(x), 2), 0.5), ("MEL", "NV"), (32, 32))
    with pytest.raises(AttackConfigError, match="device_path=on needs a model that scores tensors"):
        ATTACKS.create("color", device_path="on").on_device(fn)
    with pytest.raises(AttackConfigError, match="device_path must be one of auto, on, off"):
        ATTACKS.create("color", device_path="gpu")


def test_robustness_rows_on_the_device_path_equal_the_numpy_path(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from PIL import Image

    import dermadv.robustness.run as run_mod
    from dermadv.data.dataset import Sample

    samples = []
    for i in range(3):
        path = tmp_path / "img" / f"img{i}.png"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(_lesion(i, (32, 32))).save(path)
        samples.append(Sample(f"img{i}", path, "mel"))
    keys = [run_mod.TransformKey("color"), run_mod.TransformKey("rotation", 2)]
    stop = run_mod.StopRule(samples=32, check_every=16)
    calls: list[int] = []
    model = _model()
    real = model.predict_tensor

    def counted(x, *a, **kw):
        calls.append(len(x))
        return real(x, *a, **kw)

    model.predict_tensor = counted  # type: ignore[method-assign]
    run_mod.run_robustness(model, samples, tmp_path / "host", keys, stop=stop, progress=False)
    assert calls == []  # the CPU keeps the numpy path
    monkeypatch.setattr(run_mod, "gpu_path", lambda model, transform: True)
    run_mod.run_robustness(model, samples, tmp_path / "dev", keys, stop=stop, progress=False)
    assert sum(calls) >= 3 * 2 * 16
    rows = [json.loads((tmp_path / r / "robustness.json").read_text())["images"] for r in ("host", "dev")]
    assert rows[0] == rows[1]
