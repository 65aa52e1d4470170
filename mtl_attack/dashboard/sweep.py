"""The text of a sweep's W&B report: its config overrides (from Hydra's files in the sweep
folder) and the tables of ``scripts/compare.py``'s report.md, so both reports say the same."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Any

import yaml

from mtl_attack.report import write_report

IMAGE_LINE = re.compile(r"^!\[([^\]]*)\]\(([^)]*)\)\s*$")


def sweep_folders(runs: list[dict[str, Any]]) -> list[Path]:
    """The multirun folders (with Hydra's ``multirun.yaml``) the runs belong to, in order."""
    folders: list[Path] = []
    for run in runs:
        sweep = Path(run["_path"]).parent.parent
        if (sweep / "multirun.yaml").is_file() and sweep not in folders:
            folders.append(sweep)
    return folders


def _yaml(path: Path) -> Any:
    """A Hydra-written YAML file (interpolations stay strings)."""
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ValueError(
            f"{path} is not valid YAML ({err}); was the sweep folder edited?"
        ) from err


def overrides_markdown(runs: list[dict[str, Any]]) -> str:
    """The sweep command's overrides and each job's own values (Hydra's overrides files)."""
    lines: list[str] = []
    for sweep in sweep_folders(runs):
        hydra = (_yaml(sweep / "multirun.yaml") or {}).get("hydra", {})
        swept = hydra.get("overrides", {}).get("task") or []
        command = " ".join(swept)
        lines += [f"Sweep `{sweep}`:", "", "```", f"python run.py -m {command}", "```", ""]
        lines += ["| job | its values of the swept keys |", "|---|---|"]
        for job in sorted(sweep.glob("*/.hydra/overrides.yaml"), key=_job_number):
            same = {o.lower() for o in swept}  # Hydra writes `false` back as `False`
            own = [o for o in _yaml(job) or [] if o.lower() not in same]
            lines.append(f"| {job.parent.parent.name} | {' '.join(f'`{o}`' for o in own)} |")
        lines.append("")
    standalone = [
        r["_path"] for r in runs if Path(r["_path"]).parent.parent not in sweep_folders(runs)
    ]
    if standalone:
        lines += ["Single runs (no sweep folder):", ""] + [f"- `{p}`" for p in standalone]
    return "\n".join(lines).strip() + "\n"


def _job_number(path: Path) -> tuple:
    name = path.parent.parent.name
    return (0, int(name), "") if name.isdigit() else (1, 0, name)


def compare_markdown(runs: list[dict[str, Any]]) -> str:
    """``scripts/compare.py``'s report.md for these runs; each PNG becomes a pointer to the
    panels that show the same numbers live. Written to a scratch folder so the sweep folder is
    left as it was."""
    with tempfile.TemporaryDirectory(prefix="mtl-attack-report-") as tmp:
        text = write_report([r["_path"] for r in runs], tmp)["report"].read_text()
    note = r"*(compare.py draws \2 here: \1; the panel grids below show the same numbers)*"
    return "\n".join(IMAGE_LINE.sub(note, line) for line in text.splitlines()) + "\n"
