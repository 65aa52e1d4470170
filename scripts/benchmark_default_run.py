"""Time the default ``python run.py`` from a clean state and with warm caches, and compare the
trained model's clean metrics with a constant predictor (train-set majority class, mean depth,
mean normal). Prints a Markdown table.

    python scripts/benchmark_default_run.py [extra overrides...]
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader

from mtl_attack.data.synthetic import SyntheticBenchmark
from mtl_attack.evaluation import evaluate
from mtl_attack.tasks import build_tasks

ROOT = Path(__file__).resolve().parents[1]
HEADLINE = {
    "segment_semantic": "miou",
    "depth_zbuffer": "abs_err",
    "normal": "angle_mean",
    "keypoints2d": "key_err",
    "edge_texture": "edge_err",
}


class ConstantPredictor(nn.Module):
    """Predicts the same map for every image: the best input-independent baseline per task."""

    def __init__(self, train_set, tasks):
        super().__init__()
        stats = {t: [] for t in tasks}
        for item in train_set:
            for t in tasks:
                stats[t].append(item[t])
        self.maps = {}
        for t, values in stats.items():
            v = torch.stack(values)
            if t == "segment_semantic":
                valid = v[v != 255]
                self.maps[t] = torch.bincount(valid).argmax()
            elif t == "normal":
                self.maps[t] = nn.functional.normalize(v.sum((0, 2, 3)), dim=0)
            elif t == "depth_zbuffer":
                self.maps[t] = v[v > 0].mean()
            else:
                self.maps[t] = v.mean()
        self.num_classes = None

    def forward(self, images):
        b, _, h, w = images.shape
        out = {}
        for t, value in self.maps.items():
            if t == "segment_semantic":
                logits = torch.zeros(b, self.num_classes, h, w)
                logits[:, value] = 1.0
                out[t] = logits
            elif t == "normal":
                out[t] = value.view(1, 3, 1, 1).expand(b, 3, h, w)
            else:
                out[t] = value.view(1, 1, 1, 1).expand(b, 1, h, w)
        return out


def timed_run(workdir: Path, overrides: list[str]) -> tuple[float, dict]:
    run_dir = workdir / f"run{int(time.time() * 1000)}"
    cmd = [
        sys.executable,
        str(ROOT / "run.py"),
        "progress=false",
        f"paths.output_dir={workdir}/out",
        f"paths.data_dir={workdir}/data",
        f"hydra.run.dir={run_dir}",
        *overrides,
    ]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT, capture_output=True)
    return time.perf_counter() - start, json.loads((run_dir / "results.json").read_text())


def main() -> None:
    overrides = sys.argv[1:]
    with tempfile.TemporaryDirectory() as tmp:
        cold, results = timed_run(Path(tmp), overrides)
        warm, _ = timed_run(Path(tmp), overrides)
        for finished in Path(tmp).rglob("evaluations"):
            shutil.rmtree(finished)  # keep the trained model, redo clean and attack evaluation
        reeval, _ = timed_run(Path(tmp), overrides)
        _, libmtl = timed_run(Path(tmp), [*overrides, "dataset.metrics=libmtl", "attack=none"])
        cfg = results["config"]["dataset"]
        data = SyntheticBenchmark(
            f"{tmp}/data/synthetic",
            cfg["tasks"],
            cfg["num_train"],
            cfg["num_test"],
            cfg["resolution"],
            cfg["num_classes"],
            cfg["seed"],
        )
        data.prepare(progress=False)
        loader = DataLoader(data.split("test"), batch_size=100)
        const = ConstantPredictor(data.split("train"), build_tasks(data.tasks, data.num_classes))
        const.num_classes = data.num_classes
        baseline = {
            convention: evaluate(
                const,
                build_tasks(data.tasks, data.num_classes, convention=convention),
                loader,
                torch.device("cpu"),
                progress=False,
            )
            for convention in ("reference", "libmtl")
        }
    print(f"default run, cold (generate data + train + evaluate + attack): {cold:.1f} s")
    print(f"default run, model cached, evaluations redone: {reeval:.1f} s")
    print(f"default run, every cache warm: {warm:.1f} s\n")
    print("| task | metric | trained model | constant predictor |")
    print("|---|---|---|---|")
    for task, metric in HEADLINE.items():
        if task in results["clean"]:
            trained, base = results["clean"][task][metric], baseline["reference"][task][metric]
            print(f"| {task} | {metric} | {trained:.4f} | {base:.4f} |")
            if task == "segment_semantic":  # the reference mIoU skips classes never hit
                trained = libmtl["clean"][task][metric]
                base = baseline["libmtl"][task][metric]
                print(
                    f"| {task} | {metric} (libmtl: all classes present) | {trained:.4f} | "
                    f"{base:.4f} |"
                )
    for entry in results.get("attacks", []):
        print(
            f"attack {entry['objective']}/{entry['step']} eps={entry['eps']}: "
            f"avg_degradation {entry['avg_degradation']:.3f}, "
            f"min_degradation {entry['min_degradation']:.3f}, {entry['seconds']:.1f} s"
        )


if __name__ == "__main__":
    main()
