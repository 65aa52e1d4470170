"""``dataset=cityscapes``: Cityscapes (segmentation + depth) in the schema, driving scenes."""

from __future__ import annotations

from collections.abc import Sequence

from mtl_attack.data.converted import ConvertedDataset


class Cityscapes(ConvertedDataset):
    """Cityscapes fine annotations: 2975 train / 500 val images (val is the ``test`` split).

    19 train-id classes (the paper's code, AdaShare, AutoMTL) or 7 categories (MTAN, LibMTL);
    ``depth_zbuffer`` holds what the converter stored (file attribute ``depth_target``): metres
    or disparity from the raw release, or the released inverse depth of the MTAN files. The
    defaults follow the Cityscapes loader of AdaShare and AutoMTL (the paper authors' code),
    on files stored at 256x512: train random scale U[0.5, 1.5), horizontal flip, pad and random
    crop to 256x512 (padding: ignore / invalid depth); test at the stored size. LibMTL's setup
    (128x256 files, no augmentation) is ``crop=[128,256] scale=[1,1] flip=false``.

    Args:
        root: folder with ``train.h5`` and ``test.h5`` from ``scripts/prepare_cityscapes.py``.
        tasks: subset of segment_semantic, depth_zbuffer.
        crop: [height, width] of the training crop and of the test resize (a no-op when equal
            to the stored size).
        scale: training random scale range [lo, hi).
        flip: random horizontal flip in training.
        preload: read each split into memory once.
        metrics: ``reference`` (the paper's code) | ``libmtl``.
    """

    name = "cityscapes"
    metric_set = "cityscapes"
    prepare_command = (
        "python scripts/prepare_cityscapes.py --source raw --root CITYSCAPES_DIR --out {out} "
        "(or --source mtan --root MTAN_CITYSCAPES_DIR; see docs/datasets.md)"
    )

    def __init__(
        self,
        root: str,
        tasks: Sequence[str] = ("segment_semantic", "depth_zbuffer"),
        crop: int | Sequence[int] = (256, 512),
        scale: Sequence[float] = (0.5, 1.5),
        flip: bool = True,
        preload: bool = False,
        metrics: str = "reference",
    ):
        super().__init__(root, tasks, crop, scale, flip, preload, metrics)
