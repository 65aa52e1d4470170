"""Our single-task FGSM, PGD-20 and APGD-20 against torchattacks' on the same classifier.

A new user's check: a small CNN trained here on procedural 32x32 images (10 classes: 2 shapes x
5 colours, random place and size, noisy background) is seen by mtl-attack as a 1x1
segmentation (``segment_semantic`` logits of shape (B, 10, 1, 1)), and both libraries attack
the same correctly classified test images at eps 8/255. Cost is the process CPU time on one
thread (``time.process_time``); ``ratio`` is the median over ``--repeats`` rounds of ours /
torchattacks measured back to back (who goes first alternates), so that load from other jobs
hits both alike; ``range`` is the smallest and largest round's ratio. Agreement: FGSM and PGD
(no random start on either side) must give the same images; APGD differs by design
(torchattacks starts at a random point, attacks only the correctly classified images, returns
the clean image where it fails and its last fooling iterate where it succeeds; ours starts at
the clean image and returns the highest-loss point), so its robust accuracy is compared.

Needs torchattacks 3.5.1, installed WITHOUT its dependencies (its normal install replaces the
pinned torch with a CUDA build):  pip install --no-deps torchattacks==3.5.1

    python scripts/benchmark_torchattacks.py                 # batch 100, 15 repeats (~3 min)
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from mtl_attack.attacks import build_attack
from mtl_attack.tasks import build_tasks

CLASSES = 10
COLOURS = torch.tensor(
    [[0.9, 0.2, 0.2], [0.2, 0.8, 0.2], [0.2, 0.3, 0.9], [0.9, 0.8, 0.1], [0.7, 0.2, 0.8]]
)


def make_images(n: int, seed: int, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Class c draws shape c // 5 (square, disk) in colour c % 5 on a noisy grey background."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, CLASSES, (n,), generator=gen)
    images = 0.4 + 0.15 * torch.rand(n, 3, size, size, generator=gen)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    centre = torch.randint(8, size - 8, (n, 2), generator=gen)
    radius = torch.randint(4, 8, (n,), generator=gen)
    dy, dx = yy - centre[:, 0, None, None], xx - centre[:, 1, None, None]
    r = radius[:, None, None]
    square = (dy.abs() <= r) & (dx.abs() <= r)
    disk = dy**2 + dx**2 <= r**2
    mask = torch.where((labels // 5 == 0)[:, None, None], square, disk)
    colour = COLOURS[labels % 5][:, :, None, None]
    return torch.where(mask[:, None], colour, images).clamp(0, 1), labels


class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(64, 128, 3, stride=2, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, CLASSES),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class AsSegmentation(nn.Module):
    """The classifier seen by mtl-attack: ``{"segment_semantic": logits (B, C, 1, 1)}``."""

    def __init__(self, classifier: nn.Module):
        super().__init__()
        self.classifier = classifier

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"segment_semantic": self.classifier(x)[:, :, None, None]}


def train(model: nn.Module, epochs: int = 6, n: int = 6000) -> float:
    images, labels = make_images(n, seed=0)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    model.train()
    for _ in range(epochs):
        for i in torch.randperm(n, generator=torch.Generator().manual_seed(1)).split(100):
            opt.zero_grad()
            F.cross_entropy(model(images[i]), labels[i]).backward()
            opt.step()
    model.eval()
    test, test_labels = make_images(1000, seed=1)
    with torch.no_grad():
        return float((model(test).argmax(1) == test_labels).float().mean())


def correct_batch(model: nn.Module, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = make_images(4 * batch, seed=2)
    with torch.no_grad():
        keep = model(images).argmax(1) == labels
    return images[keep][:batch], labels[keep][:batch]


def attacks(model: nn.Module, eps: float, steps: int):
    """{name: (ours, theirs)}: callables mapping (images, labels) to adversarial images."""
    import torchattacks

    tasks = build_tasks(["segment_semantic"], CLASSES)
    seg = AsSegmentation(model)

    def ours(step: str, n: int):
        target = "segment_semantic"
        attack = build_attack("single", step, tasks, eps=eps, steps=n, target_task=target)
        return lambda x, y: attack(seg, x, {"segment_semantic": y[:, None, None]})

    return {
        "fgsm": (ours("fgsm", 1), torchattacks.FGSM(model, eps=eps / 255)),
        "pgd": (
            ours("pgd", steps),
            torchattacks.PGD(
                model, eps=eps / 255, alpha=eps / 255 / steps, steps=steps, random_start=False
            ),
        ),
        "apgd": (ours("apgd", steps), torchattacks.APGD(model, eps=eps / 255, steps=steps)),
    }


def cpu_seconds(fn, *args) -> tuple[float, torch.Tensor]:
    start = time.process_time()
    out = fn(*args)
    return time.process_time() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--eps", type=float, default=8.0, help="pixel levels")
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = SmallCNN()
    accuracy = train(model)
    images, labels = correct_batch(model, args.batch)
    print(
        f"torch {torch.__version__}, 1 thread; classifier clean accuracy {accuracy:.3f}; "
        f"{len(images)} correctly classified images, eps {args.eps}/255, {args.steps} steps"
    )
    table = attacks(model, args.eps, args.steps)
    times = {name: ([], []) for name in table}
    outputs = {}
    for name, pair in table.items():  # warm-up
        outputs[name] = [fn(images, labels) for fn in pair]
    for repeat in range(args.repeats):
        for name, pair in table.items():
            order = (0, 1) if repeat % 2 == 0 else (1, 0)  # who goes first alternates
            for i in order:
                seconds, _ = cpu_seconds(pair[i], images, labels)
                times[name][i].append(seconds)
    head = f"{'attack':<8} {'ours s':>8} {'torchattacks s':>15} {'ratio':>6} {'range':>11}"
    print(head + "  agreement")
    for name, (ours_t, theirs_t) in times.items():
        ratios = sorted(a / b for a, b in zip(ours_t, theirs_t))  # back-to-back pairs
        print(
            f"{name:<8} {statistics.median(ours_t):>8.3f} {statistics.median(theirs_t):>15.3f} "
            f"{statistics.median(ratios):>6.2f} {ratios[0]:>5.2f}-{ratios[-1]:<5.2f}  "
            f"{agreement(model, name, images, labels, *outputs[name])}"
        )


def agreement(model, name, images, labels, ours, theirs) -> str:
    """Same images for FGSM and PGD; robust accuracies for APGD. Both inside the budget."""
    with torch.no_grad():
        acc = [float((model(x).argmax(1) == labels).float().mean()) for x in (ours, theirs)]
    if name == "apgd":
        return f"robust accuracy ours {acc[0]:.3f}, torchattacks {acc[1]:.3f}"
    differ = int(((ours - theirs).abs() > 1e-6).sum())
    return (
        f"{differ} of {ours.numel()} pixel values differ by > 1e-6; "
        f"robust accuracy ours {acc[0]:.3f}, torchattacks {acc[1]:.3f}"
    )


if __name__ == "__main__":
    main()
