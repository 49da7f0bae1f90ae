"""Canonical diagnosis codes (HAM10000 style) and the synonyms the published ISIC layouts use."""

from __future__ import annotations

#: Canonical codes, in the order used for multi-class outputs and reports.
DIAGNOSES: tuple[str, ...] = ("mel", "nv", "bcc", "akiec", "bkl", "df", "vasc", "scc", "unk")

MELANOMA = "mel"
NAEVUS = "nv"

#: Default class groups for the study's question: melanoma vs benign melanocytic naevus.
DEFAULT_MELANOMA_CLASSES: frozenset[str] = frozenset({"mel"})
DEFAULT_BENIGN_CLASSES: frozenset[str] = frozenset({"nv"})

#: ISIC 2019 challenge diagnosis columns (ground-truth and submission CSVs), in the files' order,
#: each with the canonical code it stands for.
ISIC2019_DIAGNOSES: dict[str, str] = {
    "MEL": "mel",
    "NV": "nv",
    "BCC": "bcc",
    "AK": "akiec",
    "BKL": "bkl",
    "DF": "df",
    "VASC": "vasc",
    "SCC": "scc",
    "UNK": "unk",
}
ISIC2019_COLUMNS: tuple[str, ...] = tuple(ISIC2019_DIAGNOSES)
#: ISIC 2018 Task 3 diagnosis columns, in the ground-truth file's order, with their canonical codes.
ISIC2018_DIAGNOSES: dict[str, str] = {
    "MEL": "mel",
    "NV": "nv",
    "BCC": "bcc",
    "AKIEC": "akiec",
    "BKL": "bkl",
    "DF": "df",
    "VASC": "vasc",
}

_SYNONYMS: dict[str, str] = {
    "mel": "mel",
    "melanoma": "mel",
    "malignant melanoma": "mel",
    "melanoma invasive": "mel",
    "melanoma in situ": "mel",
    "melanoma, nos": "mel",
    "nv": "nv",
    "nevus": "nv",
    "naevus": "nv",
    "nevi": "nv",
    "naevi": "nv",
    "melanocytic nevus": "nv",
    "melanocytic naevus": "nv",
    "benign melanocytic nevus": "nv",
    "benign naevus": "nv",
    "benign nevus": "nv",
    "bcc": "bcc",
    "basal cell carcinoma": "bcc",
    "ak": "akiec",
    "akiec": "akiec",
    "actinic keratosis": "akiec",
    "actinic keratoses": "akiec",
    "bkl": "bkl",
    "benign keratosis": "bkl",
    "benign keratosis-like lesions": "bkl",
    "seborrheic keratosis": "bkl",
    "solar lentigo": "bkl",
    "lichenoid keratosis": "bkl",
    "pigmented benign keratosis": "bkl",
    "df": "df",
    "dermatofibroma": "df",
    "vasc": "vasc",
    "vascular lesion": "vasc",
    "scc": "scc",
    "squamous cell carcinoma": "scc",
    "unk": "unk",
    "unknown": "unk",
}

# Added by the data engineer: ISIC archive taxonomy (diagnosis_2..diagnosis_3 of archive exports;
# the most specific level that maps wins), ISIC 2017/2020 names and class-folder spellings.
_SYNONYMS.update(
    {
        "malignant melanocytic proliferations (melanoma)": "mel",
        "melanoma metastasis": "mel",
        "benign melanocytic proliferations": "nv",
        "melanocytic nevi": "nv",
        "melanocytic naevi": "nv",
        "solar or actinic keratosis": "akiec",
        "squamous cell carcinoma, invasive": "scc",
        "squamous cell carcinoma, nos": "scc",
        "squamous cell carcinoma in situ": "scc",
        "lichen planus like keratosis": "bkl",
        "benign keratosis like lesions": "bkl",
        "benign keratoses": "bkl",
        "hemangioma": "vasc",
        "angioma": "vasc",
        "angiokeratoma": "vasc",
        "pyogenic granuloma": "vasc",
        "vascular lesions": "vasc",
        "benign soft tissue proliferations - vascular": "vasc",
        "basal cell carcinomas": "bcc",
    }
)


def canonical_diagnosis(label: str) -> str | None:
    """Map a label as written in an ISIC/HAM10000 file to its canonical code, or None if unknown."""
    key = " ".join(str(label).strip().lower().replace("_", " ").split())
    return _SYNONYMS.get(key)
