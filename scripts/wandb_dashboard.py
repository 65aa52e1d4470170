"""Build the W&B comparison dashboard: a saved workspace for the project, and a report per sweep.

python scripts/wandb_dashboard.py --entity my-team --project mtl-attack            # workspace
python scripts/wandb_dashboard.py --entity my-team --project mtl-attack \\
    --sweep outputs/multirun/2026-11-24_10-00-00                                  # + its report
python scripts/wandb_dashboard.py --entity E --project P --group G --dry-run     # print the spec

Panels are built from the runs' results.json files (under --results, default outputs/) with the
key helper the runs log through. Needs the extra: pip install -e ".[wandb]".
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mtl_attack.utils.formatting import one_line

DRY_RUN = "use --dry-run to print the spec without network"


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entity", required=True, help="W&B entity (user or team)")
    parser.add_argument("--project", required=True, help="W&B project the runs logged to")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--group", help="also build a report on this sweep group")
    which.add_argument("--sweep", help="also build a report on this multirun folder")
    parser.add_argument(
        "--results",
        nargs="+",
        default=None,
        help="folders with the runs' results.json (default: outputs/ when it exists)",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="print the spec as JSON, no network"
    )
    return parser.parse_args(argv)


def fail(message: str) -> int:
    print(f"wandb_dashboard: {message}", file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    results = args.results or (["outputs"] if Path("outputs").is_dir() else [])
    try:
        from mtl_attack.dashboard import build, publish, server_problem

        problem = None if args.dry_run else server_problem()  # fail fast, before any work
        if problem:
            return fail(f"{problem}; {DRY_RUN}")
        board = build(args.entity, args.project, results, args.group, args.sweep)
    except (ImportError, OSError, ValueError) as err:
        return fail(str(err) if isinstance(err, ImportError) else one_line(err))
    if args.dry_run:
        print(json.dumps(board.to_json(), indent=1))
        return 0
    try:
        urls = publish(board)
    except Exception as err:  # whatever the server answered, as one line
        return fail(f"W&B did not save the dashboard ({one_line(err)}); {DRY_RUN}")
    print("\n".join(urls))
    return 0


if __name__ == "__main__":
    sys.exit(main())
