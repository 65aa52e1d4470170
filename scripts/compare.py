"""Compare runs offline: a Markdown report with PNG plots from results.json files.

python scripts/compare.py outputs/multirun/2026-11-24_10-00-00          # a sweep folder
python scripts/compare.py a/results.json b/results.json --out reports/ab
python scripts/compare.py SWEEP --wandb online --project mtl-attack      # also log the figures
"""

from __future__ import annotations

import argparse

from mtl_attack.loggers import WandbLogger
from mtl_attack.report import write_report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", help="sweep/run folders or results.json files")
    parser.add_argument("--out", default=None, help="report folder (default: the first folder)")
    parser.add_argument(
        "--wandb",
        choices=["offline", "online"],
        default=None,
        help="also log the figures to a W&B run in this mode",
    )
    parser.add_argument("--project", default="mtl-attack")
    args = parser.parse_args()
    result = write_report(args.paths, args.out)
    print(f"{result['runs']} runs -> {result['report']} ({len(result['figures'])} figures)")
    if args.wandb:
        logger = WandbLogger(
            project=args.project, mode=args.wandb, dir=str(result["report"].parent)
        )
        logger.start({"report": str(result["report"])}, name="compare")
        try:
            logger.log_images({f"report/{p.stem}": p for p in result["figures"]})
        finally:
            logger.finish()


if __name__ == "__main__":
    main()
