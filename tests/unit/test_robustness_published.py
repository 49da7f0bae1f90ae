"""Published robustness metrics: the SAM benchmark's example evaluation reproduced from its own result
files (tests/data/sam/), SAM-C aggregation from predictions, and ImageNet-P flip probability by hand."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from dermadv.errors import DataError
from dermadv.robustness.published import (
    SAM_C_CORRUPTIONS,
    SAM_P_SEQUENCES,
    balanced_corruption_errors,
    benchmark_score,
    flip_probability,
    flip_rate,
    flips_per_image,
    mean_bce,
    mean_flip_rate,
    read_sam_scores,
    reference_for,
    relative_bce,
    relative_mbce,
    sam_c_summary,
    sam_p_summary,
    severity_errors,
    summary_from_files,
    write_sam_submission,
)

SAM = Path(__file__).resolve().parents[1] / "data" / "sam"


def _plain_row(name: str) -> list[float]:
    """The value row of a result file, parsed without the code under test."""
    return [float(x) for x in (SAM / name).read_text(encoding="utf-8").splitlines()[1].split(",")]


# ----- the benchmark's published example ----------------------------------------------------------
def test_reads_the_published_result_files() -> None:
    clean = read_sam_scores(SAM / "ResNet50_SAM.csv")
    assert list(clean) == ["clean"] and round(clean["clean"], 5) == 0.18177
    c = read_sam_scores(SAM / "ResNet50_SAM-C.csv")
    assert tuple(c) == SAM_C_CORRUPTIONS and len(c) == 14
    p = read_sam_scores(SAM / "Baseline_SAM-P.csv")
    assert tuple(p) == SAM_P_SEQUENCES and len(p) == 10


def test_reproduces_the_published_example_evaluation() -> None:
    """code/example_evaluation.ipynb prints (x 100): mBCE 26.99 / adjusted 88.29, relative mBCE 8.82 /
    adjusted 118.40, mFR 6.73 / adjusted 138.71."""
    user_clean = read_sam_scores(SAM / "ResNet50_SAM.csv")["clean"]
    base_clean = read_sam_scores(SAM / "Baseline_SAM.csv")["clean"]
    user_c, base_c = read_sam_scores(SAM / "ResNet50_SAM-C.csv"), read_sam_scores(SAM / "Baseline_SAM-C.csv")
    user_p, base_p = read_sam_scores(SAM / "ResNet50_SAM-P.csv"), read_sam_scores(SAM / "Baseline_SAM-P.csv")
    c = sam_c_summary(user_c, base_c, user_clean, base_clean)
    p = sam_p_summary(user_p, base_p)
    assert round(c["clean_BCE"], 5) == 0.18177
    assert round(c["mBCE"], 4) == 0.2699 and round(mean_bce(user_c), 4) == 0.2699
    assert round(p["mFR"], 4) == 0.0673
    printed = {k: f"{v * 100:.2f}" for k, v in {**c, **p}.items()}
    assert printed == {
        "clean_BCE": "18.18",
        "mBCE": "26.99",
        "mBCE_adjusted": "88.29",
        "relative_mBCE": "8.82",
        "relative_mBCE_adjusted": "118.40",
        "mFR": "6.73",
        "mFR_adjusted": "138.71",
    }
    assert relative_mbce(user_c, user_clean) == pytest.approx(c["relative_mBCE"])


def test_adjusted_and_relative_values_by_hand() -> None:
    u, b = _plain_row("ResNet50_SAM-C.csv"), _plain_row("Baseline_SAM-C.csv")
    u0, b0 = _plain_row("ResNet50_SAM.csv")[0], _plain_row("Baseline_SAM.csv")[0]
    rel_adjusted = sum((ui - u0) / (bi - b0) for ui, bi in zip(u, b, strict=True)) / len(u)
    adjusted = sum(ui / bi for ui, bi in zip(u, b, strict=True)) / len(u)
    relative = sum(ui - u0 for ui in u) / len(u)
    user_c, base_c = read_sam_scores(SAM / "ResNet50_SAM-C.csv"), read_sam_scores(SAM / "Baseline_SAM-C.csv")
    score = benchmark_score(user_c, base_c, u0, b0)
    assert score == pytest.approx({"unadjusted": relative, "adjusted": rel_adjusted}, rel=1e-12)
    assert benchmark_score(user_c, base_c)["adjusted"] == pytest.approx(adjusted, rel=1e-12)
    up, bp = _plain_row("ResNet50_SAM-P.csv"), _plain_row("Baseline_SAM-P.csv")
    fps = dict(zip(SAM_P_SEQUENCES, up, strict=True))
    base = dict(zip(SAM_P_SEQUENCES, bp, strict=True))
    assert mean_flip_rate(fps, base) == pytest.approx(sum(x / y for x, y in zip(up, bp, strict=True)) / 10)


def test_summary_from_files() -> None:
    files = {
        "user_clean": SAM / "ResNet50_SAM.csv",
        "baseline_clean": SAM / "Baseline_SAM.csv",
        "user_c": SAM / "ResNet50_SAM-C.csv",
        "baseline_c": SAM / "Baseline_SAM-C.csv",
        "user_p": SAM / "ResNet50_SAM-P.csv",
        "baseline_p": SAM / "Baseline_SAM-P.csv",
    }
    out = summary_from_files(files)
    assert f"{out['relative_mBCE_adjusted'] * 100:.2f}" == "118.40" and f"{out['mFR'] * 100:.2f}" == "6.73"
    assert set(summary_from_files({k: files[k] for k in ("user_p", "baseline_p")})) == {"mFR", "mFR_adjusted"}
    with pytest.raises(ValueError, match="missing"):
        summary_from_files({"user_c": files["user_c"], "baseline_c": files["baseline_c"]})


def test_benchmark_score_checks_its_columns() -> None:
    with pytest.raises(ValueError, match="different columns"):
        benchmark_score({"a": 0.1, "b": 0.2}, {"a": 0.1, "c": 0.2})
    with pytest.raises(ValueError, match="both clean scores"):
        benchmark_score({"a": 0.1}, {"a": 0.2}, user_clean=0.1)
    with pytest.raises(ValueError, match="zero"):
        benchmark_score({"a": 0.3}, {"a": 0.2}, 0.1, 0.2)
    # matched by name, not by position
    assert benchmark_score({"a": 0.1, "b": 0.4}, {"b": 0.2, "a": 0.1})["adjusted"] == pytest.approx(1.5)


# ----- SAM-C from predictions ---------------------------------------------------------------------
def _predict(y: np.ndarray, sensitivity_hits: int, specificity_hits: int) -> np.ndarray:
    """Labels with the first ``sensitivity_hits`` melanomas and ``specificity_hits`` naevi right."""
    pred = 1 - y
    pred[np.flatnonzero(y == 1)[:sensitivity_hits]] = 1
    pred[np.flatnonzero(y == 0)[:specificity_hits]] = 0
    return pred


def test_mbce_from_predictions_by_hand() -> None:
    y = np.array([1, 0, 1, 0, 0, 1, 0, 1, 0, 0])  # 4 melanomas, 6 naevi
    predictions = {
        "blur": {1: _predict(y, 4, 6), 2: _predict(y, 3, 5)},  # BCE 0 and 1 - (3/4 + 5/6)/2 = 5/24
        "noise": {1: _predict(y, 2, 3), 2: _predict(y, 0, 6)},  # BCE 1/2 and 1/2
    }
    per = severity_errors(y, predictions)
    assert per["blur"] == pytest.approx({1: 0.0, 2: 5 / 24})
    bce = balanced_corruption_errors(y, predictions)
    assert bce == pytest.approx({"blur": 5 / 48, "noise": 0.5})
    assert mean_bce(bce) == pytest.approx((5 / 48 + 0.5) / 2)
    clean = 1 - (3 / 4 + 1) / 2  # sensitivity 3/4, specificity 1
    assert relative_bce(bce, clean) == pytest.approx({"blur": 5 / 48 - 1 / 8, "noise": 0.5 - 1 / 8})
    assert relative_mbce(bce, clean) == pytest.approx((5 / 48 + 0.5) / 2 - 1 / 8)


def test_severity_errors_name_the_bad_set() -> None:
    with pytest.raises(ValueError, match="noise severity 3"):
        severity_errors([1, 0], {"noise": {3: [1, 0, 1]}})


# ----- ImageNet-P flip probability ----------------------------------------------------------------
def test_flip_probability_by_hand() -> None:
    # [0,0,1,1,0]: previous 0,1,0,1 -> 2/4; first (vs 0) 0,1,1,0 -> 2/4
    assert flip_probability([[0, 0, 1, 1, 0]], "previous") == 0.5
    assert flip_probability([[0, 0, 1, 1, 0]], "first") == 0.5
    # [0,1,1,1,1]: previous 1/4, first 4/4; [0,1,0,1,0]: previous 4/4, first 2/4
    seqs = [[0, 1, 1, 1, 1], [0, 1, 0, 1, 0]]
    assert flips_per_image(seqs, "previous").tolist() == [0.25, 1.0]
    assert flips_per_image(seqs, "first").tolist() == [1.0, 0.5]
    assert flip_probability(seqs, "previous") == pytest.approx(0.625)
    assert flip_probability(seqs, "first") == pytest.approx(0.75)
    # stride 2 (difficulty 2): sub-sequences 0,0,0 and 1,1,1 never flip, stride 1 always does
    assert flip_probability([[0, 1, 0, 1, 0, 1]], "previous", step=2) == 0.0
    assert flip_probability([[0, 1, 0, 1, 0, 1]], "previous", step=1) == 1.0
    # stride 2 on [0,0,1,1,1]: frames 0,1,1 (one flip of 2) and 0,1 (one of 1): 2/3
    assert flip_probability([[0, 0, 1, 1, 1]], "previous", step=2) == pytest.approx(2 / 3)


def _flip_probability_loop(preds: np.ndarray, noise: bool, step: int) -> float:
    """The definition written out: per sequence, the mean over its comparisons; then the mean."""
    total = 0.0
    for seq in preds:
        flips = []
        for start in range(step):
            sub = list(seq[start::step])
            for j in range(1, len(sub)):
                ref = sub[0] if noise else sub[j - 1]
                flips.append(int(sub[j] != ref))
        total += sum(flips) / len(flips)
    return total / len(preds)


@pytest.mark.parametrize("step", [1, 2, 3])
@pytest.mark.parametrize("reference", ["first", "previous"])
def test_flip_probability_matches_the_definition(step: int, reference: str) -> None:
    preds = np.random.default_rng(step).integers(0, 3, (25, 31))
    expected = _flip_probability_loop(preds, reference == "first", step)
    assert flip_probability(preds, reference, step) == pytest.approx(expected)  # type: ignore[arg-type]


def test_flip_rates() -> None:
    assert reference_for("gaussian_noise") == "first" and reference_for("rotate") == "previous"
    assert flip_rate(0.02, 0.04) == 0.5
    assert mean_flip_rate({"a": 0.02, "b": 0.03}, {"b": 0.01, "a": 0.04}) == pytest.approx((0.5 + 3.0) / 2)
    with pytest.raises(ValueError, match="baseline"):
        flip_rate(0.1, 0.0)


@pytest.mark.parametrize(
    ("preds", "kwargs", "match"),
    [
        ([0, 1, 0], {}, "images, frames"),
        ([[0.2, 0.8]], {}, "integer class labels"),
        ([[0, 1]], {"step": 2}, "nothing to compare"),
        ([[0, 1]], {"reference": "last"}, "reference"),
        ([[0, 1]], {"step": 0}, "step"),
    ],
)
def test_flip_probability_rejects_bad_input(preds: object, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        flip_probability(preds, **kwargs)  # type: ignore[arg-type]


# ----- benchmark files ----------------------------------------------------------------------------
def test_write_sam_submission_round_trip(tmp_path: Path) -> None:
    out = write_sam_submission(tmp_path / "Mine_SAM.csv", ["a/1.png", "b/2.png"], [0.25, 1.0], [0.75, 0.0])
    with open(out, encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows == [
        ["image_path", "nevus", "melanoma"],
        ["a/1.png", "0.25", "0.75"],
        ["b/2.png", "1.0", "0.0"],
    ]
    third = 1 / 3
    write_sam_submission(out, ["x,y.png"], [third], [1 - third])  # overwritten; comma quoted
    with open(out, encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[1][0] == "x,y.png" and float(rows[1][1]) == third


@pytest.mark.parametrize(
    ("paths", "nevus", "melanoma", "match"),
    [
        (["a", "b"], [0.5, 0.5], [0.5, 1.2], r"melanoma\[1\] = 1.2"),
        (["a", "b"], [0.5, float("nan")], [0.5, 0.5], r"nevus\[1\]"),
        (["a", "a"], [0.5, 0.5], [0.5, 0.5], "more than once"),
        (["a", "b"], [0.5], [0.5, 0.5], "one value per image"),
        ([], [], [], "at least one image"),
        (["a", ""], [0.5, 0.5], [0.5, 0.5], "non-empty"),
    ],
)
def test_write_sam_submission_rejects_bad_input(
    tmp_path: Path, paths: list[str], nevus: list[float], melanoma: list[float], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        write_sam_submission(tmp_path / "x_SAM.csv", paths, nevus, melanoma)
    assert not (tmp_path / "x_SAM.csv").exists()


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("clean\n0.1\n0.2\n", "found 3 rows"),
        ("a,b\n0.1\n", "2 column names but 1 values"),
        ("a,a\n0.1,0.2\n", "distinct"),
        ("a,b\n0.1,oops\n", "'b' holds 'oops'"),
        ("a\nnan\n", "not a finite number"),
    ],
)
def test_read_sam_scores_rejects_malformed_files(tmp_path: Path, text: str, match: str) -> None:
    f = tmp_path / "bad_SAM.csv"
    f.write_text(text, encoding="utf-8")
    with pytest.raises(DataError, match=match) as info:
        read_sam_scores(f)
    assert str(f) in str(info.value)


def test_read_sam_scores_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="cannot read"):
        read_sam_scores(tmp_path / "none.csv")
