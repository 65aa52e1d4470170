"""Build the leaderboard of the standard protocol from attack=standard runs.

python scripts/leaderboard.py                                   # outputs/leaderboard
python scripts/leaderboard.py outputs/multirun/X outputs/runs/Y/results.json --out board/
python scripts/leaderboard.py --compare board/leaderboard.json  # what moved since then
python scripts/leaderboard.py --entity my-team --publish        # also save the W&B report

Writes leaderboard.md, leaderboard.json, leaderboard.png and wandb_report.json (the W&B report
spec; saved to W&B only with --publish) into --out (default: the first folder given).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mtl_attack.report.leaderboard import LeaderboardError, current_version
from mtl_attack.report.leaderboard_views import write_leaderboard

ROOT = Path(__file__).resolve().parents[1]
STANDARD = ROOT / "conf" / "attack" / "standard.yaml"
DEFAULT = "outputs/leaderboard"  # where +experiment=leaderboard files its runs


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "paths", nargs="*", default=[DEFAULT], help=f"run/multirun folders or files ({DEFAULT})"
    )
    parser.add_argument("--out", default=None, help="output folder (default: the first folder)")
    parser.add_argument(
        "--version", type=int, default=None, help="protocol version (default: conf/attack's)"
    )
    parser.add_argument("--compare", default=None, help="an earlier leaderboard.json")
    parser.add_argument(
        "--budget", default="full", help="full (the protocol) | smoke (runs of the tests)"
    )
    parser.add_argument("--entity", default=None, help="W&B entity of the report")
    parser.add_argument("--project", default="mtl-attack", help="W&B project the runs logged to")
    parser.add_argument("--publish", action="store_true", help="save the report to W&B")
    return parser.parse_args(argv)


def first_line(err: BaseException) -> str:
    """``Type: first line of the message`` (file-system and W&B errors can span lines)."""
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0] if lines else ''}"


def fail(message: str) -> int:
    print(f"leaderboard: {message}", file=sys.stderr)
    return 1


def wandb_report(board, text: str, args: argparse.Namespace, out: Path) -> str:
    """Write the W&B report spec; with --publish also save it (its URL)."""
    from mtl_attack.dashboard.leaderboard import publish_report, write_report_spec

    spec = write_report_spec(board, text, args.entity or "ENTITY", args.project, out)
    if not args.publish:
        return f"W&B report spec: {spec} (save it with --entity E --publish)"
    return f"W&B report: {publish_report(board, text, args.entity, args.project)}"


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.publish and not args.entity:
        return fail("--publish needs --entity (your W&B user or team)")
    if args.paths == [DEFAULT] and not Path(DEFAULT).is_dir():
        return fail(f"no {DEFAULT} here: evaluate models first (python run.py -m "
                    "+experiment=leaderboard), or name the run folders to collect")  # fmt: skip
    try:
        version = args.version if args.version is not None else current_version(STANDARD)
        written = write_leaderboard(args.paths, args.out, version, args.compare, args.budget)
        report = wandb_report(written["board"], written["text"], args, written["folder"])
    except (LeaderboardError, OSError, ImportError) as err:
        return fail(str(err) if isinstance(err, LeaderboardError) else first_line(err))
    board = written["board"]
    print(f"{len(board.models)} model(s), protocol standard version {board.version}:")
    print("\n".join(f"  {p}" for p in written["files"]))
    print(report)
    if written["changes"]:
        print("\n".join(written["changes"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
