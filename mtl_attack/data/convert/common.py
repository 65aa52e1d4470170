"""What every converter shares: input checks, fingerprints, and the all-or-nothing write.

A conversion writes every split into ``<out>/.partial/`` and moves the finished files into
``<out>`` only after all of them are complete, so an interrupted run leaves no output; the
staging folder is removed on any exit. Each file records a fingerprint of the inputs (paths,
sizes, modification times) and options; re-running with an equal fingerprint skips the work
unless ``force``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from mtl_attack.data.schema import DatasetFileError, SplitWriter

Item = tuple[np.ndarray, dict[str, np.ndarray]]


def require_file(path: str | os.PathLike, origin: str) -> Path:
    """Return ``path`` if it is a file, else raise naming it and where it comes from."""
    path = Path(path)
    if not path.is_file():
        raise DatasetFileError(f"missing file {path}: {origin}")
    return path


def require_dir(path: str | os.PathLike, origin: str) -> Path:
    path = Path(path)
    if not path.is_dir():
        raise DatasetFileError(f"missing folder {path}: {origin}")
    return path


def check_array(
    path: Path, array: np.ndarray, shape: Sequence[int | None], kinds: str, what: str
) -> np.ndarray:
    """Raise naming ``path`` unless ``array`` has ``shape`` (None = any) and a dtype kind in
    ``kinds`` (numpy kind letters: u int, i signed, f float, b bool)."""
    ok = array.ndim == len(shape) and all(s is None or s == a for s, a in zip(shape, array.shape))
    if not ok or array.dtype.kind not in kinds:
        want = "x".join("*" if s is None else str(s) for s in shape)
        raise DatasetFileError(
            f"{path}: expected {what} of shape ({want}) and dtype kind {kinds!r}, "
            f"got shape {array.shape} dtype {array.dtype}"
        )
    return array


def read_png(path: Path, modes: Sequence[str], what: str, origin: str) -> np.ndarray:
    """Decode a PNG whose PIL mode is one of ``modes`` (``RGB``, ``L``, ``I;16``/``I`` for
    16-bit) into a numpy array (16-bit -> uint16)."""
    require_file(path, origin)
    try:
        with Image.open(path) as img:
            mode = img.mode
            array = np.asarray(img)
    except OSError as err:
        raise DatasetFileError(f"{path}: cannot decode {what} PNG ({err}); {origin}") from err
    if mode not in modes:
        raise DatasetFileError(f"{path}: expected {what} PNG in mode {list(modes)}, got {mode}")
    if mode.startswith("I"):
        if array.min() < 0 or array.max() > 65535:
            raise DatasetFileError(f"{path}: {what} values outside the 16-bit range")
        array = array.astype(np.uint16)
    return array


def fingerprint(files: Iterable[Path], options: dict[str, Any]) -> str:
    """Hash of the input files' resolved paths, sizes and mtimes, and the options."""
    digest = hashlib.sha256(json.dumps(options, sort_keys=True, default=str).encode())
    for f in files:
        stat = os.stat(f)
        digest.update(f"{Path(f).resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


@dataclass
class SplitPlan:
    """One output split: ``count`` images of ``height`` x ``width`` produced by ``items()``."""

    name: str
    count: int
    height: int
    width: int
    items: Callable[[], Iterator[Item]]
    attrs: dict[str, Any] | None = None


def stored_fingerprint(path: Path) -> str | None:
    if not path.is_file():
        return None
    try:
        with h5py.File(path, "r") as f:
            value = f.attrs.get("source_fingerprint")
    except OSError:
        return None
    return value.decode() if isinstance(value, bytes) else value


def write_splits(
    out: str | os.PathLike,
    plans: Sequence[SplitPlan],
    tasks: Sequence[str],
    attrs: dict[str, Any],
    source_fingerprint: str,
    force: bool = False,
    progress: bool = True,
    compression: str | None = "lzf",
) -> bool:
    """Write ``<out>/<split>.h5`` for every plan, all or nothing. Returns False (and writes
    nothing) when the files already hold this conversion and ``force`` is off."""
    out = Path(out)
    finals = [out / f"{p.name}.h5" for p in plans]
    stamps = [stored_fingerprint(f) for f in finals]
    if not force and all(s == source_fingerprint for s in stamps):
        return False
    existing = [f for f, s in zip(finals, stamps) if f.exists()]
    if existing and not force:
        raise FileExistsError(
            f"{existing[0]} holds a conversion of other inputs or options; "
            "pass --force to overwrite it"
        )
    staging = out / ".partial"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        for plan in plans:
            _write_one(
                staging / f"{plan.name}.h5",
                plan,
                tasks,
                attrs,
                source_fingerprint,
                progress,
                compression,
            )
        for plan, final in zip(plans, finals):
            os.replace(staging / f"{plan.name}.h5", final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return True


def _write_one(path, plan: SplitPlan, tasks, attrs, source_fingerprint, progress, compression):
    split_attrs = {**attrs, **(plan.attrs or {}), "split": plan.name}
    split_attrs["source_fingerprint"] = source_fingerprint
    with SplitWriter(
        path, plan.count, plan.height, plan.width, tasks, split_attrs, compression
    ) as writer:
        n = 0
        for image, targets in tqdm(
            plan.items(), total=plan.count, desc=plan.name, disable=not progress
        ):
            writer.write(n, image, targets)
            n += 1
        if n != plan.count:
            raise DatasetFileError(f"split {plan.name}: expected {plan.count} images, got {n}")
