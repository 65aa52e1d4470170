"""Images per second of the NYUv2 training loader (321x321 crop, random scale and flip) reading
the converted HDF5 file, against decoding the same images from the AdaShare PNG/.npy files.

Renders N synthetic indoor scenes at NYU's 480x640 (smooth images, so PNG sizes are
realistic), writes them in the AdaShare layout, converts them with
``scripts/prepare_nyuv2.py --source adashare`` (lzf and uncompressed), and times full passes of
a DataLoader over each. Prints a Markdown table.

    python scripts/benchmark_loader.py [--images 48] [--workers 0 2] [--batch 8] [--epochs 2]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from mtl_attack.data.convert.cli import main_nyuv2
from mtl_attack.data.convert.normals import decode_adashare_normals, encode_adashare_normals
from mtl_attack.data.h5dataset import to_tensors
from mtl_attack.data.nyuv2 import NYUv2
from mtl_attack.data.render import Camera, render_scene
from mtl_attack.data.transforms import ScaleCropFlip


def write_pngs(root: Path, n: int) -> None:
    camera = Camera.for_size(480, 640)
    for sub in ("img", "seg", "normal_mask", "depth"):
        (root / sub).mkdir(parents=True)
    for i in range(n):
        s = render_scene(np.random.default_rng(i), camera, 40)
        Image.fromarray(s["image"]).save(root / "img" / f"{i:04d}.png")
        Image.fromarray(s["segment_semantic"]).save(root / "seg" / f"{i:04d}.png")
        rgb = encode_adashare_normals(s["normal"])
        Image.fromarray(rgb).save(root / "normal_mask" / f"{i:04d}.png")
        np.save(root / "depth" / f"{i:04d}.npy", s["depth_zbuffer"].astype(np.float32))
    rows = [[f"{d}/{i:04d}.{e}" for d, e in (("img", "png"), ("seg", "png"),
             ("normal_mask", "png"), ("depth", "npy"))] for i in range(n)]  # fmt: skip
    (root / "nyu_v2_3task.json").write_text(json.dumps({"train": rows, "test": rows[:1]}))


class PNGDataset(Dataset):
    """Decodes the AdaShare files on every access (what a loader without conversion does)."""

    def __init__(self, root: Path, n: int, crop: int = 321):
        self.root, self.n, self.transform = root, n, ScaleCropFlip(crop)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        name = f"{i:04d}"
        image = np.asarray(Image.open(self.root / "img" / f"{name}.png").convert("RGB"))
        targets = {
            "segment_semantic": np.asarray(Image.open(self.root / "seg" / f"{name}.png")),
            "normal": decode_adashare_normals(
                np.asarray(Image.open(self.root / "normal_mask" / f"{name}.png"))
            ),
            "depth_zbuffer": np.load(self.root / "depth" / f"{name}.npy"),
        }
        return to_tensors(*self.transform(image, targets))


def images_per_second(dataset, workers: int, batch: int, epochs: int) -> float:
    loader = DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=workers,
                        persistent_workers=workers > 0)  # fmt: skip
    for _ in loader:  # warm-up pass: worker start, page cache
        break
    start, count = time.perf_counter(), 0
    for _ in range(epochs):
        for b in loader:
            count += b["image"].shape[0]
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_pngs(tmp / "png", args.images)
        sources = {"PNG + .npy (decode per item)": PNGDataset(tmp / "png", args.images)}
        for comp in ("lzf", "none"):
            out = tmp / f"h5_{comp}"
            main_nyuv2(["--source", "adashare", "--root", str(tmp / "png"), "--out", str(out),
                        "--compression", comp, "--quiet"])  # fmt: skip
            mb = (out / "train.h5").stat().st_size / 2**20
            sources[f"HDF5 {comp} ({mb / args.images:.1f} MB/image)"] = NYUv2(str(out)).split(
                "train", train=True
            )
        png_mb = sum(f.stat().st_size for f in (tmp / "png").rglob("*.*")) / 2**20
        print(f"{args.images} images 480x640 -> 321x321 crop, batch {args.batch}, "
              f"PNG tree {png_mb / args.images:.1f} MB/image\n")  # fmt: skip
        print("| source | workers | images/s |\n|---|---:|---:|")
        for name, dataset in sources.items():
            for w in args.workers:
                ips = images_per_second(dataset, w, args.batch, args.epochs)
                print(f"| {name} | {w} | {ips:.1f} |")


if __name__ == "__main__":
    main()
