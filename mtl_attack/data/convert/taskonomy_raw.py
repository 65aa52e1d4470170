"""Tiny-Taskonomy from the raw Taskonomy layout (datasets.md §4).

``{root}/{building}/{task}/point_{P}_view_{V}_domain_{domain}.png`` where the domain equals the
folder name except ``segment_semantic`` -> ``segmentsemantic``. Every task is first resized to
``size`` x ``size`` with nearest neighbour, the RGB included, as the paper's loader does (256).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from mtl_attack.data.convert.common import (
    SplitPlan,
    check_array,
    fingerprint,
    read_png,
    require_dir,
)
from mtl_attack.data.convert.normals import decode_taskonomy_normals
from mtl_attack.data.schema import ALL_TASKS, IGNORE_INDEX, DatasetFileError
from mtl_attack.data.transforms import resize_nearest

ORIGIN = (
    "the raw Taskonomy release (per-building task archives, see "
    "github.com/StanfordVL/taskonomy/tree/master/data), extracted as {building}/{task}/"
)
#: The tiny split (splits_taskonomy.zip, train_val_test_tiny.csv), datasets.md §4.
TINY = {
    "train": (
        "hanson merom klickitat onaga leonardo marstons newfields pinesdale lakeville cosmos "
        "benevolence pomaria tolstoy shelbyville allensville wainscott beechwood coffeen "
        "stockman hiteman woodbine lindenwood forkland mifflinburg ranchester"
    ).split(),
    "val": "wiconisco corozal collierville markleeville darden".split(),
    "test": "ihlen muleshoe uvalda noxapater mcdade".split(),
}
DOMAIN = {t: ("segmentsemantic" if t == "segment_semantic" else t) for t in ALL_TASKS}
CLASS_NAMES = (
    "background bottle chair couch potted_plant bed dining_table toilet tv microwave oven "
    "toaster sink refrigerator book clock vase"
).split()
#: semseg_prior_factor.npy (Taskonomy code/lib/data, 4 decimals as in datasets.md §3.3);
#: pass --prior-factor to use the file's full-precision values.
PRIOR_FACTOR = (
    0.5424, 9.1674, 7.3310, 7.1620, 8.7229, 7.6133, 8.2369, 9.1486, 8.8220,
    9.0858, 8.9141, 9.1772, 9.0354, 8.6039, 9.1699, 9.1467, 9.1374,
)  # fmt: skip
DEPTH_INVALID_FROM = 64500  # raw >= this is invalid (65535 = missing), Taskonomy's threshold
_VIEW = re.compile(r"^point_(\d+)_view_(\d+)_domain_rgb\.png$")


def views(building_dir: Path) -> list[str]:
    """The ``point_P_view_V`` stems of a building, from its rgb folder, sorted numerically."""
    rgb = require_dir(building_dir / "rgb", ORIGIN)
    found = [m for m in (_VIEW.match(p.name) for p in rgb.iterdir()) if m]
    found.sort(key=lambda m: (int(m.group(1)), int(m.group(2))))
    return [f"point_{m.group(1)}_view_{m.group(2)}" for m in found]


def task_path(building_dir: Path, task: str, stem: str) -> Path:
    return building_dir / task / f"{stem}_domain_{DOMAIN.get(task, task)}.png"


def decode_view(building_dir: Path, stem: str, size: int, uncertain: str) -> tuple:
    """Decode one view into (image (S, S, 3) uint8, schema targets)."""

    def load(task: str, modes, what: str, ndim: int) -> np.ndarray:
        path = task_path(building_dir, task, stem)
        array = read_png(path, modes, what, ORIGIN)
        check_array(path, array, (None,) * ndim, "u", what)
        return resize_nearest(array, size, size)

    image = load("rgb", ("RGB",), "8-bit RGB image", 3)
    raw_seg = load("segment_semantic", ("L",), "8-bit label map", 2)
    if raw_seg.max() > 17:
        path = task_path(building_dir, "segment_semantic", stem)
        raise DatasetFileError(f"{path}: labels must lie in 0..17, found {raw_seg.max()}")
    seg = np.maximum(raw_seg, 1) - 1  # 0 uncertain -> background (the paper's loader)
    if uncertain == "ignore":
        seg = np.where(raw_seg == 0, IGNORE_INDEX, seg)
    raw_depth = load("depth_zbuffer", ("I;16", "I;16B", "I"), "16-bit depth", 2)
    invalid = raw_depth >= DEPTH_INVALID_FROM
    depth = np.where(invalid, 0.0, raw_depth / 512.0).astype(np.float32)  # 1/512 m units
    normal = decode_taskonomy_normals(load("normal", ("RGB",), "8-bit RGB normal", 3), invalid)
    heat = load("keypoints2d", ("I;16", "I;16B", "I"), "16-bit keypoint map", 2)
    edge = load("edge_texture", ("I;16", "I;16B", "I"), "16-bit edge map", 2)
    targets = {
        "segment_semantic": seg.astype(np.uint8),
        "normal": normal,
        "depth_zbuffer": depth,
        "keypoints2d": (heat / 65536.0).astype(np.float32),
        "edge_texture": (edge / 65536.0).astype(np.float32),
    }
    return image, targets


def parse_buildings(split: str | None, explicit: dict[str, str | None]) -> dict[str, list[str]]:
    """``--split tiny`` or explicit comma-separated lists per split (train and test required)."""
    if split is not None:
        if split != "tiny":
            raise ValueError(f"--split must be 'tiny' (or give --train/--val/--test), got {split}")
        return {k: list(v) for k, v in TINY.items()}
    lists = {k: [b for b in v.split(",") if b] for k, v in explicit.items() if v}
    if "train" not in lists or "test" not in lists:
        raise ValueError("give --split tiny, or --train B1,B2 --test B3 (and optionally --val)")
    return lists


def _prior(prior_factor: str | Path | None) -> np.ndarray:
    if prior_factor is None:
        return np.asarray(PRIOR_FACTOR, np.float64)
    prior = np.load(prior_factor, allow_pickle=False)
    return check_array(Path(prior_factor), prior, (17,), "f", "17 class weights").astype(float)


def taskonomy_plans(
    root: str | Path,
    buildings: dict[str, Sequence[str]],
    size: int = 256,
    uncertain: str = "background",
    prior_factor: str | Path | None = None,
    skip_incomplete: bool = False,
) -> tuple[list[SplitPlan], dict, str]:
    """Plans for each split of ``buildings``, the schema attrs and the input fingerprint.

    Raises naming the first missing building folder or task file (unless ``skip_incomplete``,
    which drops views lacking a task file).
    """
    root = require_dir(root, ORIGIN)
    if uncertain not in ("background", "ignore"):
        raise ValueError(f"--uncertain must be background or ignore, got {uncertain!r}")
    entries: dict[str, list[tuple[Path, str]]] = {}
    files: list[Path] = []
    for split, names in buildings.items():
        entries[split] = []
        for name in names:
            bdir = require_dir(root / name, f"building {name!r} of split {split}; {ORIGIN}")
            for stem in views(bdir):
                paths = [task_path(bdir, t, stem) for t in ("rgb", *ALL_TASKS)]
                missing = [p for p in paths if not p.is_file()]
                if missing and not skip_incomplete:
                    raise DatasetFileError(
                        f"missing file {missing[0]}: {ORIGIN} (or pass --skip-incomplete)"
                    )
                if not missing:
                    entries[split].append((bdir, stem))
                    files += paths
        if not entries[split]:
            raise DatasetFileError(f"split {split}: no complete views in buildings {names}")

    def items(rows) -> Iterator:
        for bdir, stem in rows:
            yield decode_view(bdir, stem, size, uncertain)

    plans = [
        SplitPlan(s, len(r), size, size, lambda r=r: items(r), {"buildings": list(buildings[s])})
        for s, r in entries.items()
    ]
    attrs = {
        "num_classes": 17,
        "class_names": CLASS_NAMES,
        "class_weights": _prior(prior_factor),
        "source_format": "taskonomy/raw",
        "uncertain_label": uncertain,
    }
    options = {"size": size, "uncertain": uncertain, "prior": str(prior_factor)}
    return plans, attrs, fingerprint(files, options)
