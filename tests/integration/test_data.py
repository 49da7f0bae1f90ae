"""dermadv.data on the real development images (../shared/data/isic-dev) and on hostile copies."""

from __future__ import annotations

import csv
import json
import shutil
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from data_support import write_csv
from dermadv.cli import app
from dermadv.data import (
    Dataset,
    check_dataset,
    dataset_hash,
    load_dataset,
    make_split,
    read_split,
    select_samples,
    sidecar_path,
    stratified_prefix,
)
from dermadv.errors import DataError


def _real_images(ham10000_dir: Path, n: int) -> list[tuple[str, str, Path]]:
    """(image_id, dx, path) of the first n HAM10000 rows, alternating mel and nv."""
    with open(ham10000_dir / "HAM10000_metadata.csv") as f:
        rows = list(csv.DictReader(f))
    mel = [r for r in rows if r["dx"] == "mel"]
    nv = [r for r in rows if r["dx"] == "nv"]
    picked = [r for pair in zip(mel, nv, strict=False) for r in pair][:n]
    return [(r["image_id"], r["dx"], ham10000_dir / "images" / f"{r['image_id']}.jpg") for r in picked]


def _kinds(ds: Dataset) -> Counter:
    return Counter(p.kind for p in ds.problems)


# ------------------------------------------------------------------------------------ shared layouts


def test_isic2019_dev_set_loads_with_right_counts(isic2019_dir: Path) -> None:
    ds = load_dataset(isic2019_dir)
    assert ds.layout == "isic2019"
    assert len(ds) == 440
    assert ds.counts() == {"mel": 200, "nv": 200, "bkl": 40}
    assert ds.problems == []
    assert all(s.path is not None and s.path.is_file() and s.path.stem == s.image_id for s in ds.samples)
    assert ds.csv_path == isic2019_dir / "ISIC_2019_Training_GroundTruth.csv"
    # The CSV itself is an equivalent path.
    via_csv = load_dataset(ds.csv_path)
    assert [s.image_id for s in via_csv.samples] == [s.image_id for s in ds.samples]
    assert dataset_hash(via_csv.samples) == dataset_hash(ds.samples)


def test_ham10000_dev_set_loads_with_metadata(ham10000_dir: Path) -> None:
    ds = load_dataset(ham10000_dir)
    assert ds.layout == "ham10000"
    assert ds.counts() == {"mel": 100, "nv": 100}
    assert ds.problems == []
    s = ds.by_id()["ISIC_0024459"]  # first row of the CSV
    assert (s.diagnosis, s.lesion_id, s.age, s.sex, s.site) == ("mel", "HAM_0005846", 80.0, "male", "back")
    assert s.metadata() == {"age": 80.0, "sex": "male", "site": "back"}
    assert all(s.lesion_id and s.lesion_id.startswith("HAM_") for s in ds.samples)
    assert all(s.sex in ("male", "female", "unknown") for s in ds.samples)
    assert all(s.site for s in ds.samples)
    ages = [s.age for s in ds.samples if s.age is not None]
    assert len(ages) >= 190 and all(0 <= a <= 100 for a in ages)


def test_check_decodes_every_real_image(ham10000_dir: Path) -> None:
    ds = check_dataset(ham10000_dir, progress=False)
    assert ds.verified and len(ds) == 200 and ds.problems == []


# ----------------------------------------------------------------------------------- other layouts


def test_isic2019_download_layout_merges_metadata_csv(tmp_path: Path, ham10000_dir: Path) -> None:
    imgs = _real_images(ham10000_dir, 6)
    root = tmp_path / "ISIC 2019"
    (root / "ISIC_2019_Training_Input").mkdir(parents=True)
    gt, meta = [], []
    for i, (iid, dx, p) in enumerate(imgs):
        shutil.copy(p, root / "ISIC_2019_Training_Input" / f"{iid}.jpg")
        gt.append(
            [iid] + [1.0 if c == dx.upper() else 0.0 for c in "MEL NV BCC AK BKL DF VASC SCC UNK".split()]
        )
        meta.append([iid, 40 + i, "anterior torso", f"BCN_{i // 2:07d}", "female"])
    write_csv(
        root / "ISIC_2019_Training_GroundTruth.csv", "image MEL NV BCC AK BKL DF VASC SCC UNK".split(), gt
    )
    write_csv(
        root / "ISIC_2019_Training_Metadata.csv",
        ["image", "age_approx", "anatom_site_general", "lesion_id", "sex"],
        meta,
    )
    ds = load_dataset(root)
    assert ds.layout == "isic2019" and ds.problems == []
    assert ds.metadata_paths == [root / "ISIC_2019_Training_Metadata.csv"]
    first = ds.by_id()[imgs[0][0]]
    assert (first.age, first.sex, first.site, first.lesion_id) == (
        40.0,
        "female",
        "anterior torso",
        "BCN_0000000",
    )
    assert ds.n_lesions() == 3


def test_isic2018_layout(tmp_path: Path, ham10000_dir: Path) -> None:
    imgs = _real_images(ham10000_dir, 4)
    cols = "MEL NV BCC AKIEC BKL DF VASC".split()
    rows = [[iid] + [1 if c == dx.upper() else 0 for c in cols] for iid, dx, _ in imgs]
    (tmp_path / "ISIC2018_Task3_Training_Input").mkdir()
    for iid, _, p in imgs:
        (tmp_path / "ISIC2018_Task3_Training_Input" / f"{iid}.jpg").symlink_to(p)
    write_csv(tmp_path / "ISIC2018_Task3_Training_GroundTruth.csv", ["image", *cols], rows)
    ds = load_dataset(tmp_path)
    assert ds.layout == "isic2018"
    assert ds.counts() == {"mel": 2, "nv": 2} and ds.problems == []


def test_ham10000_download_layout_and_isic2017(tmp_path: Path, ham10000_dir: Path) -> None:
    """HAM10000 as downloaded: images split over HAM10000_images_part_1/_part_2; ISIC 2017 GT CSV."""
    imgs = _real_images(ham10000_dir, 4)
    for i, (iid, _, p) in enumerate(imgs):
        part = tmp_path / "ham" / f"HAM10000_images_part_{i % 2 + 1}"
        part.mkdir(parents=True, exist_ok=True)
        (part / f"{iid}.jpg").symlink_to(p)
    write_csv(
        tmp_path / "ham" / "HAM10000_metadata.csv",
        ["lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization"],
        [[f"HAM_{i}", iid, dx, "histo", "", "unknown", "unknown"] for i, (iid, dx, _) in enumerate(imgs)],
    )
    ds = load_dataset(tmp_path / "ham")
    assert ds.layout == "ham10000" and ds.counts() == {"mel": 2, "nv": 2} and ds.problems == []
    assert len(ds.image_dirs) == 2 and ds.samples[0].metadata() == {
        "age": None,
        "sex": "unknown",
        "site": "unknown",
    }

    d17 = tmp_path / "isic17"
    (d17 / "ISIC-2017_Training_Data").mkdir(parents=True)
    for iid, _, p in imgs:
        (d17 / "ISIC-2017_Training_Data" / f"{iid}.jpg").symlink_to(p)
    write_csv(
        d17 / "ISIC-2017_Training_Part3_GroundTruth.csv",
        ["image_id", "melanoma", "seborrheic_keratosis"],
        [[imgs[0][0], 1.0, 0.0], [imgs[1][0], 0.0, 0.0], [imgs[2][0], 0.0, 1.0], [imgs[3][0], 1.0, 1.0]],
    )
    ds = load_dataset(d17)
    assert ds.layout == "isic2017"
    assert [s.diagnosis for s in ds.samples] == ["mel", "nv", "bkl"]
    assert _kinds(ds) == {"ambiguous_label": 1}


def test_class_folders_layout(tmp_path: Path, ham10000_dir: Path) -> None:
    imgs = _real_images(ham10000_dir, 6)
    folder = {"mel": "melanoma", "nv": "nv"}
    for iid, dx, p in imgs:
        (tmp_path / folder[dx]).mkdir(exist_ok=True)
        shutil.copy(p, tmp_path / folder[dx] / f"{iid}.jpg")
    (tmp_path / "misc").mkdir()
    shutil.copy(imgs[0][2], tmp_path / "misc" / "odd.jpg")
    shutil.copy(imgs[1][2], tmp_path / "stray.jpg")
    ds = load_dataset(tmp_path)
    assert ds.layout == "folders"
    assert ds.counts() == {"mel": 3, "nv": 3}
    assert {s.image_id: s.diagnosis for s in ds.samples} == {iid: dx for iid, dx, _ in imgs}
    assert _kinds(ds) == {"unknown_label": 1, "unlabelled_image": 1}
    by_kind = {p.kind: p for p in ds.problems}
    assert by_kind["unknown_label"].path == tmp_path / "misc"
    assert by_kind["unlabelled_image"].path == tmp_path / "stray.jpg"


def test_isic_archive_layout_uses_most_specific_diagnosis(tmp_path: Path, ham10000_dir: Path) -> None:
    imgs = _real_images(ham10000_dir, 5)
    for iid, _, p in imgs:
        shutil.copy(p, tmp_path / f"{iid}.jpg")
    d = [
        ("Malignant", "Malignant melanocytic proliferations (Melanoma)", "Melanoma Invasive", "malignant"),
        ("Benign", "Benign melanocytic proliferations", "Nevus", "benign"),
        ("Malignant", "Malignant melanocytic proliferations (Melanoma)", "", "malignant"),  # level 2 only
        ("Benign", "Benign melanocytic proliferations", "Nevus", "benign"),
        ("Benign", "Benign epidermal proliferations", "Acrochordon", "benign"),  # maps at no level
    ]
    header = [
        "isic_id",
        "attribution",
        "age_approx",
        "anatom_site_general",
        "benign_malignant",
        "diagnosis_1",
        "diagnosis_2",
        "diagnosis_3",
        "lesion_id",
        "sex",
    ]
    rows = [
        [iid, "Anonymous", 55, "head/neck", bm, d1, d2, d3, f"IL_{i}", "male"]
        for i, ((iid, _, _), (d1, d2, d3, bm)) in enumerate(zip(imgs, d, strict=True))
    ]
    write_csv(tmp_path / "metadata.csv", header, rows)
    ds = load_dataset(tmp_path)
    assert ds.layout == "isic_archive"
    assert [s.diagnosis for s in ds.samples] == ["mel", "nv", "mel", "nv"]
    assert ds.samples[0].metadata() == {"age": 55.0, "sex": "male", "site": "head/neck"}
    [problem] = ds.problems
    assert problem.kind == "unknown_label" and problem.image_id == imgs[4][0]
    assert problem.path == tmp_path / "metadata.csv" and "Acrochordon" in problem.message
    # Older exports have a single `diagnosis` column.
    write_csv(
        tmp_path / "metadata.csv",
        ["isic_id", "diagnosis", "benign_malignant"],
        [[imgs[0][0], "melanoma", "malignant"], [imgs[1][0], "nevus", "benign"]],
    )
    old = load_dataset(tmp_path / "metadata.csv")
    assert [s.diagnosis for s in old.samples] == ["mel", "nv"]
    assert Counter(p.kind for p in old.problems) == {"unlabelled_image": 3}


# -------------------------------------------------------------------------------------- hostile input


def test_every_problem_is_reported_with_its_file(tmp_path: Path, ham10000_dir: Path) -> None:
    imgs = _real_images(ham10000_dir, 8)
    root = tmp_path / "my derm data"
    images = root / "images"
    images.mkdir(parents=True)
    for iid, _, p in imgs[:4]:
        shutil.copy(p, images / f"{iid}.jpg")
    ids = [iid for iid, _, _ in imgs]
    data = imgs[4][2].read_bytes()
    (images / f"{ids[4]}.jpg").write_bytes(data[: len(data) // 2])  # truncated JPEG
    Image.open(imgs[5][2]).save(images / f"{ids[5]}.jpg", format="PNG")  # PNG named .jpg
    (images / f"{ids[6]}.jpg").write_bytes(b"")  # empty file
    # ids[7]: no image on disk
    shutil.copy(imgs[0][2], images / "ISIC_9999999.jpg")  # image with no label row
    rows = [[f"HAM_{i}", iid, dx, "histo", 50, "male", "back"] for i, (iid, dx, _) in enumerate(imgs)]
    rows[3][2] = "not-a-diagnosis"
    rows.append(["HAM_0", ids[0], "mel", "histo", 50, "male", "back"])  # duplicate id
    csv_path = write_csv(
        root / "HAM10000_metadata.csv",
        ["lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization"],
        rows,
    )

    ds = check_dataset(root, progress=False)
    assert [s.image_id for s in ds.samples] == ids[:3]
    assert _kinds(ds) == {
        "unreadable_image": 3,
        "unknown_label": 1,
        "missing_image": 1,
        "duplicate_id": 1,
        "unlabelled_image": 1,
    }
    by_id = {(p.kind, p.image_id): p for p in ds.problems}
    assert "truncated" in by_id["unreadable_image", ids[4]].message
    assert by_id["unreadable_image", ids[4]].path == images / f"{ids[4]}.jpg"
    assert "PNG" in by_id["unreadable_image", ids[5]].message
    assert "empty" in by_id["unreadable_image", ids[6]].message
    assert by_id["unknown_label", ids[3]].path == csv_path
    assert "not-a-diagnosis" in by_id["unknown_label", ids[3]].message
    assert by_id["missing_image", ids[7]].path == csv_path
    assert (
        by_id["duplicate_id", ids[0]].path == csv_path and "line 10" in by_id["duplicate_id", ids[0]].message
    )
    assert by_id["unlabelled_image", "ISIC_9999999"].path == images / "ISIC_9999999.jpg"
    assert all(str(p).startswith(str(p.path)) for p in ds.problems)
    # Without decoding, the broken files still count as samples; the rest is found the same way.
    quick = load_dataset(root)
    assert len(quick) == 6 and "unreadable_image" not in _kinds(quick)


def test_ambiguous_one_hot_rows(tmp_path: Path, ham10000_dir: Path) -> None:
    (iid1, _, p1), (iid2, _, p2), (iid3, _, p3) = _real_images(ham10000_dir, 3)
    for iid, p in ((iid1, p1), (iid2, p2), (iid3, p3)):
        shutil.copy(p, tmp_path / f"{iid}.jpg")
    header = "image MEL NV BCC AK BKL DF VASC SCC UNK".split()
    write_csv(
        tmp_path / "gt.csv",
        header,
        [[iid1, 1, 1, 0, 0, 0, 0, 0, 0, 0], [iid2, *[0] * 9], [iid3, 1, 0, 0, 0, 0, 0, 0, 0, 0]],
    )
    ds = load_dataset(tmp_path)
    assert [s.image_id for s in ds.samples] == [iid3]
    assert _kinds(ds) == {"ambiguous_label": 2}
    assert all(p.path == tmp_path / "gt.csv" for p in ds.problems)


def test_empty_csv_and_unknown_layout_are_clear_errors(tmp_path: Path, isic_dev: Path) -> None:
    empty = tmp_path / "labels.csv"
    empty.write_text("")
    for p in (empty, tmp_path):
        with pytest.raises(DataError, match="labels.csv: file is empty"):
            load_dataset(p)
    with pytest.raises(DataError, match="Accepted layouts.*pass one of them: ham10000, isic2019"):
        load_dataset(isic_dev)
    with pytest.raises(DataError, match="no such file"):
        load_dataset(tmp_path / "nowhere")


def test_large_image_verifies(tmp_path: Path, ham10000_dir: Path) -> None:
    iid, _, p = _real_images(ham10000_dir, 1)[0]
    (tmp_path / "mel").mkdir()
    Image.open(p).resize((6000, 4000), Image.BILINEAR).save(tmp_path / "mel" / f"{iid}.jpg", quality=85)
    ds = check_dataset(tmp_path, progress=False)
    assert len(ds) == 1 and ds.problems == []


# ---------------------------------------------------------------------------------------------- splits


def test_split_is_stratified_and_reproducible(isic2019_dir: Path) -> None:
    ds = load_dataset(isic2019_dir)
    sp = make_split(ds, val_fraction=0.2, seed=0, classes=None)
    full = ds.counts()
    for dx, n in full.items():
        assert abs(sp.counts()["val"][dx] - 0.2 * n) <= 1
        assert sp.counts()["train"][dx] + sp.counts()["val"][dx] == n
    assert make_split(ds, seed=0, classes=None).subsets == sp.subsets
    other = make_split(ds, seed=1, classes=None)
    assert other.subsets != sp.subsets and other.counts() == sp.counts()
    binary = make_split(ds, val_fraction=0.3, seed=0)
    assert binary.counts() == {"train": {"mel": 140, "nv": 140}, "val": {"mel": 60, "nv": 60}}


def test_split_never_splits_a_lesion(tmp_path: Path, ham10000_dir: Path) -> None:
    """Several images share lesion ids (sizes 1-4): no lesion may straddle train and val."""
    with open(ham10000_dir / "HAM10000_metadata.csv") as f:
        rows = list(csv.DictReader(f))
    # Lesion of the k-th image of each diagnosis: lesions hold 1, 2, 3, 4, 1, 2, ... images in turn.
    lesion_of = [g for g in range(100) for _ in range(g % 4 + 1)]
    seen: Counter = Counter()
    for r in rows:
        r["lesion_id"] = f"L_{r['dx']}_{lesion_of[seen[r['dx']]]}"
        seen[r["dx"]] += 1
    csv_path = write_csv(tmp_path / "HAM10000_metadata.csv", list(rows[0]), [list(r.values()) for r in rows])
    (tmp_path / "images").symlink_to(ham10000_dir / "images")
    ds = load_dataset(csv_path)
    assert ds.n_lesions() < 90
    for seed in range(5):
        sp = make_split(ds, seed=seed)
        assert sp.straddling_lesions() == []
        lesion_subsets: dict[str, set[str]] = {}
        for s in sp.samples:
            lesion_subsets.setdefault(s.lesion_id, set()).add(sp.subsets[s.image_id])
        assert all(len(v) == 1 for v in lesion_subsets.values())
        for dx in ("mel", "nv"):
            assert abs(sp.counts()["val"][dx] - 20) <= 2


def test_split_files_round_trip_and_validation(tmp_path: Path, ham10000_dir: Path) -> None:
    ds = load_dataset(ham10000_dir)
    sp = make_split(ds, seed=3)
    out = tmp_path / "splits dir" / "split.csv"
    side = sp.write(out)
    assert side == sidecar_path(out) == out.with_suffix(".json")
    with open(out) as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["image_id", "diagnosis", "lesion_id", "subset"]
    assert Counter(r["subset"] for r in rows) == {"train": 160, "val": 40}
    meta = json.loads(side.read_text())
    assert meta["seed"] == 3 and meta["val_fraction"] == 0.2 and meta["classes"] == ["mel", "nv"]
    assert meta["counts"] == {"train": {"mel": 80, "nv": 80}, "val": {"mel": 20, "nv": 20}}
    assert meta["dataset"]["root"] == str(ham10000_dir) and meta["dataset"]["hash"] == dataset_hash(
        ds.samples
    )
    back = read_split(out, ds)
    assert back.hash() == sp.hash() == meta["split_hash"] and back.seed == 3
    assert all(s.path is not None for s in back.val)
    assert not list(out.parent.glob(".*tmp"))  # atomic write leaves no temporary file

    bad = tmp_path / "bad.csv"
    write_csv(
        bad,
        ["image_id", "diagnosis", "lesion_id", "subset"],
        [[rows[0]["image_id"], rows[0]["diagnosis"], "", "validation"]],
    )
    with pytest.raises(DataError, match=r"bad\.csv: invalid split: line 2: unknown subset 'validation'"):
        read_split(bad)
    write_csv(bad, ["image_id", "diagnosis", "lesion_id", "subset"], [["ISIC_0000000", "mel", "", "val"]])
    with pytest.raises(DataError, match=r"bad\.csv: 1 image id\(s\) are not usable samples.*ISIC_0000000"):
        read_split(bad, ds)


def test_dataset_hash_is_order_free_and_label_sensitive(ham10000_dir: Path) -> None:
    samples = load_dataset(ham10000_dir).samples
    h = dataset_hash(samples)
    assert len(h) == 16 and dataset_hash(list(reversed(samples))) == h
    flipped = [(s.image_id, "nv" if i == 0 else s.diagnosis) for i, s in enumerate(samples)]
    assert dataset_hash(flipped) != h
    assert dataset_hash([(s.image_id, s.diagnosis) for s in samples]) == h


def test_select_samples(tmp_path: Path, isic2019_dir: Path) -> None:
    ds = load_dataset(isic2019_dir)
    assert len(select_samples(ds)) == 400  # default: melanoma and naevus
    assert len(select_samples(isic2019_dir, classes=None)) == 440
    split_csv = tmp_path / "split.csv"
    make_split(ds, seed=0).write(split_csv)
    val = select_samples(ds, split=split_csv, subset="val")
    assert Counter(s.diagnosis for s in val) == {"mel": 40, "nv": 40}
    ten = select_samples(ds, split=split_csv, subset="val", limit=10)
    assert Counter(s.diagnosis for s in ten) == {"mel": 5, "nv": 5}
    eleven = select_samples(ds, split=split_csv, subset="val", limit=11)
    assert {s.image_id for s in ten} < {s.image_id for s in eleven}
    some = [val[5].image_id, val[2].image_id]
    assert [s.image_id for s in select_samples(ds, ids=",".join(some))] == some
    train_id = next(s.image_id for s in select_samples(ds, split=split_csv, subset="train"))
    with pytest.raises(DataError, match=f"{train_id} .*excluded"):
        select_samples(ds, split=split_csv, subset="val", ids=[train_id])
    with pytest.raises(DataError, match="without a split"):
        select_samples(ds, subset="val")
    with pytest.raises(DataError, match="unknown class 'melanomaa'"):
        select_samples(ds, classes=["melanomaa"])
    strat = stratified_prefix(ds.samples, 11)
    assert Counter(s.diagnosis for s in strat) == {"mel": 5, "nv": 5, "bkl": 1}


# ------------------------------------------------------------------------------------------------- CLI


def test_cli_check_json(ham10000_dir: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["data", "check", str(ham10000_dir), "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["ok"] is True and report["layout"] == "ham10000" and report["verified_images"] is True
    assert report["counts"] == {"mel": 100, "nv": 100} and report["n_lesions"] == 200
    assert report["hash"] == dataset_hash(load_dataset(ham10000_dir).samples)

    (tmp_path / "nv").mkdir()
    (tmp_path / "nv" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    res = runner.invoke(app, ["data", "check", str(tmp_path), "--json"])
    assert res.exit_code == 1
    bad = json.loads(res.stdout)
    assert bad["ok"] is False and bad["problems"][0]["kind"] == "unreadable_image"
    assert bad["problems"][0]["path"] == str(tmp_path / "nv" / "broken.jpg")
    res = runner.invoke(app, ["data", "check", str(tmp_path / "nv")])
    assert res.exit_code == 1 and "invalid_dataset" in res.stdout and "Accepted layouts" in res.stdout


def test_cli_split(isic2019_dir: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "split.csv"
    args = ["data", "split", str(isic2019_dir), "--out", str(out), "--seed", "4", "--all-classes"]
    res = runner.invoke(app, [*args, "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["counts"]["val"] == {"mel": 40, "nv": 40, "bkl": 8} and summary["status"] == "written"
    assert (
        read_split(out).hash()
        == summary["split_hash"]
        == make_split(isic2019_dir, seed=4, classes=None).hash()
    )
    res = runner.invoke(app, args)
    assert res.exit_code == 0 and "unchanged" in res.stdout
    res = runner.invoke(app, ["data", "split", str(isic2019_dir), "--out", str(out), "--seed", "5"])
    assert isinstance(res.exception, DataError) and "--force" in str(res.exception)
    res = runner.invoke(
        app, ["data", "split", str(isic2019_dir), "--out", str(out), "--seed", "5", "--force"]
    )
    assert res.exit_code == 0 and "mel" in res.stdout
    assert read_split(out).seed == 5
    # --out naming a directory is a clear error (it used to be reported as "a different split").
    res = runner.invoke(app, ["data", "split", str(isic2019_dir), "--out", str(tmp_path)])
    assert isinstance(res.exception, DataError) and "is a directory" in str(res.exception)
