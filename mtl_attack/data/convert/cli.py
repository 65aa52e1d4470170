"""Command lines of ``scripts/prepare_{nyuv2,taskonomy,cityscapes}.py``.

``main_*(argv) -> bool`` (True = written, False = already up to date) raise
:class:`~mtl_attack.data.schema.DatasetFileError`, ``ValueError`` or ``FileExistsError`` with
one-line messages; the scripts print them and exit 1.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from mtl_attack.data.convert.cityscapes_mtan import mtan_plans as cityscapes_mtan_plans
from mtl_attack.data.convert.cityscapes_raw import TARGETS, parse_size, raw_plans
from mtl_attack.data.convert.common import write_splits
from mtl_attack.data.convert.nyuv2_files import adashare_plans, mtan_plans
from mtl_attack.data.convert.nyuv2_mat import TASKS as NYU_TASKS
from mtl_attack.data.convert.nyuv2_mat import labeled_mat_plans
from mtl_attack.data.convert.taskonomy_raw import parse_buildings, taskonomy_plans
from mtl_attack.data.schema import ALL_TASKS


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output folder for the split .h5 files")
    parser.add_argument("--force", action="store_true", help="redo an up-to-date conversion")
    parser.add_argument("--compression", default="lzf", choices=["lzf", "gzip", "none"])
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def _write(args, plans, tasks, attrs, stamp) -> bool:
    compression = None if args.compression == "none" else args.compression
    written = write_splits(
        args.out, plans, tasks, attrs, stamp, args.force, not args.quiet, compression
    )
    sizes = ", ".join(f"{p.name}={p.count}" for p in plans)
    if written:
        print(f"wrote {args.out}: {sizes} images")
    else:
        print(f"{args.out} is up to date ({sizes} images); pass --force to convert again")
    return written


def nyuv2_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Convert NYUv2 into train.h5/test.h5 (see docs/datasets.md)."
    )
    p.add_argument("--source", required=True, choices=["labeled-mat", "adashare", "mtan"])
    p.add_argument("--mat", help="labeled-mat: nyu_depth_v2_labeled.mat (v7.3)")
    p.add_argument("--splits", help="labeled-mat: splits.mat (trainNdxs/testNdxs, 1-based)")
    p.add_argument("--class-map", help="labeled-mat: classMapping40.mat (894 -> 40)")
    p.add_argument("--classes", type=int, default=40, choices=[40, 13])
    p.add_argument("--class13-map", help="class13Mapping.mat, for --classes 13")
    p.add_argument(
        "--normals",
        help="labeled-mat: AdaShare normal_mask/ folder instead of computing normals from depth",
    )
    p.add_argument("--normal-radius", type=int, default=3, help="plane-fit window half size")
    p.add_argument("--root", help="adashare/mtan: the release's root folder")
    _common(p)
    return p


def main_nyuv2(argv: Sequence[str] | None = None) -> bool:
    args = nyuv2_parser().parse_args(argv)
    if args.source == "labeled-mat":
        for flag in ("mat", "splits", "class_map"):
            if getattr(args, flag) is None:
                raise ValueError(f"--source labeled-mat needs --{flag.replace('_', '-')} FILE")
        made = labeled_mat_plans(
            args.mat,
            args.splits,
            args.class_map,
            args.classes,
            args.class13_map,
            args.normals,
            args.normal_radius,
        )
    elif args.root is None:
        raise ValueError(f"--source {args.source} needs --root DIR (the release's folder)")
    elif args.source == "adashare":
        made = adashare_plans(args.root, args.classes, args.class13_map)
    else:
        if args.classes != 13:
            raise ValueError("--source mtan has 13 classes: pass --classes 13")
        made = mtan_plans(args.root)
    return _write(args, *made[:1], NYU_TASKS, *made[1:])


def taskonomy_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Convert raw Tiny-Taskonomy into split .h5 files.")
    p.add_argument("--root", required=True, help="folder holding {building}/{task}/*.png")
    p.add_argument("--split", choices=["tiny"], help="the tiny split's buildings (25/5/5)")
    for name in ("train", "val", "test"):
        p.add_argument(f"--{name}", help=f"comma-separated {name} buildings (instead of --split)")
    p.add_argument("--size", type=int, default=256, help="stored side (nearest resize; 256)")
    p.add_argument(
        "--uncertain",
        default="background",
        choices=["background", "ignore"],
        help="raw seg 0: merged into background (the paper) or ignored (255)",
    )
    p.add_argument("--prior-factor", help="semseg_prior_factor.npy (17 class weights)")
    p.add_argument("--skip-incomplete", action="store_true", help="drop views missing a task")
    _common(p)
    return p


def main_taskonomy(argv: Sequence[str] | None = None) -> bool:
    args = taskonomy_parser().parse_args(argv)
    explicit = {"train": args.train, "val": args.val, "test": args.test}
    buildings = parse_buildings(args.split, explicit)
    made = taskonomy_plans(
        args.root, buildings, args.size, args.uncertain, args.prior_factor, args.skip_incomplete
    )
    return _write(args, *made[:1], ALL_TASKS, *made[1:])


CITYSCAPES_TASKS = ("segment_semantic", "depth_zbuffer")


def cityscapes_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Convert Cityscapes into train.h5/test.h5 (see docs/datasets.md)."
    )
    p.add_argument("--source", required=True, choices=["raw", "mtan"])
    p.add_argument(
        "--root",
        required=True,
        help="raw: folder holding leftImg8bit/ gtFine/ disparity/ camera/; mtan: the folder "
        "holding train/ and val/",
    )
    p.add_argument(
        "--classes", type=int, default=19, choices=[19, 7], help="train ids | categories"
    )
    p.add_argument(
        "--target",
        default="depth",
        choices=list(TARGETS),
        help="raw: depth in metres (baseline * fx / disparity) or disparity in pixels",
    )
    p.add_argument("--size", help="raw: stored HEIGHTxWIDTH (default 256x512; 128x256 as LibMTL)")
    p.add_argument("--max-depth", type=float, help="raw, depth: farther pixels become invalid")
    _common(p)
    return p


def main_cityscapes(argv: Sequence[str] | None = None) -> bool:
    args = cityscapes_parser().parse_args(argv)
    if args.source == "raw":
        size = parse_size(args.size or "256x512")
        made = raw_plans(args.root, args.classes, args.target, size, args.max_depth)
    else:
        given = [f for f in ("size", "max_depth") if getattr(args, f) is not None]
        if given or args.target != "depth":
            flag = given[0].replace("_", "-") if given else "target"
            raise ValueError(
                f"--{flag} applies to --source raw; mtan files are stored as released"
            )
        made = cityscapes_mtan_plans(args.root, args.classes)
    return _write(args, *made[:1], CITYSCAPES_TASKS, *made[1:])
