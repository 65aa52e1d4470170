"""``dataset=taskonomy``: Tiny-Taskonomy in the schema, with the paper's 224x224 preprocessing."""

from __future__ import annotations

from collections.abc import Sequence

from mtl_attack.data.converted import ConvertedDataset
from mtl_attack.data.transforms import L1_PAD, Compose, TaskonomyEncode


class Taskonomy(ConvertedDataset):
    """Tiny-Taskonomy (25/5/5 buildings) with the paper's 224x224 preprocessing and targets.

    Depth becomes log(1 + 512 d) / log(2^16), keypoints and edges are rescaled to [-1, 1]
    (:class:`~mtl_attack.data.transforms.TaskonomyEncode`); padded keypoint/edge pixels are 255
    and ignored by the L1 losses; the file's prior class weights weight the segmentation loss.
    Metrics are the paper's Taskonomy set (err, cosine_similarity, abs_err, key_err, edge_err).
    Args as for :class:`NYUv2`; ``crop`` is 224 in the paper.
    """

    name = "taskonomy"
    splits = ("train", "val", "test")
    metric_set = "taskonomy"
    l1_invalid = L1_PAD
    prepare_command = (
        "python scripts/prepare_taskonomy.py --root TASKONOMY_DIR --split tiny --out {out}"
    )

    def __init__(
        self,
        root: str,
        tasks: Sequence[str] = (
            "segment_semantic",
            "normal",
            "depth_zbuffer",
            "keypoints2d",
            "edge_texture",
        ),
        crop: int = 224,
        scale: Sequence[float] = (0.5, 1.5),
        flip: bool = True,
        preload: bool = False,
        metrics: str = "reference",
    ):
        super().__init__(root, tasks, crop, scale, flip, preload, metrics)

    def train_transform(self):
        return Compose(TaskonomyEncode(), super().train_transform())

    def test_transform(self):
        return Compose(TaskonomyEncode(), super().test_transform())
