"""Draw a few synthetic samples and their task maps into a PNG (the figure of docs/synthetic.md).

python scripts/render_samples.py --out docs/synthetic_samples.png --num 4
"""

from __future__ import annotations

import argparse

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from mtl_attack.data.render import Camera, class_names, render_scene  # noqa: E402
from mtl_attack.data.schema import IGNORE_INDEX  # noqa: E402

COLUMNS = ["image", "segment_semantic", "depth_zbuffer", "normal", "keypoints2d", "edge_texture"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/synthetic_samples.png")
    parser.add_argument("--num", type=int, default=4)
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--num-classes", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    camera = Camera.for_size(args.resolution, args.resolution)
    fig, axes = plt.subplots(args.num, len(COLUMNS), figsize=(2.2 * len(COLUMNS), 2.2 * args.num))
    cmap = plt.get_cmap("tab10", args.num_classes)
    for row in range(args.num):
        sample = render_scene(np.random.default_rng([args.seed, 0, row]), camera, args.num_classes)
        for col, key in enumerate(COLUMNS):
            ax = axes[row, col]
            ax.imshow(_display(key, sample[key], cmap), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(key, fontsize=9)
    names = ", ".join(f"{i}={n}" for i, n in enumerate(class_names(args.num_classes)))
    fig.suptitle(f"synthetic benchmark (classes: {names}; black = ignore / invalid)", fontsize=9)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


def _display(key: str, value: np.ndarray, cmap) -> np.ndarray:
    if key == "segment_semantic":
        rgb = cmap(np.where(value == IGNORE_INDEX, 0, value))[..., :3]
        rgb[value == IGNORE_INDEX] = 0
        return rgb
    if key == "depth_zbuffer":
        shown = np.where(value > 0, 1.0 / np.maximum(value, 1e-3), 0)
        return shown / shown.max()
    if key == "normal":
        return np.where(np.linalg.norm(value, axis=-1, keepdims=True) > 0, (value + 1) / 2, 0)
    if key == "image":
        return value
    return np.stack([value] * 3, -1)


if __name__ == "__main__":
    main()
