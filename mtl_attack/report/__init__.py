"""Offline reports comparing runs: Markdown with PNG plots, built from results.json files.

Stands to the side of the pipeline like logging: it reads only what runs wrote. Every attack
result is keyed on its complete identity (:mod:`.results`): no row is dropped, rows that would
look alike say which setting tells them apart, and duplicates are reported.

    write_report(["outputs/multirun/<sweep>"])   # -> report.md + PNGs in that folder
"""

from __future__ import annotations

from mtl_attack.report.markdown import model_key, write_report
from mtl_attack.report.plots import HEADLINE, transfer_matrices
from mtl_attack.report.results import (
    Result,
    distinguish,
    find_results,
    load_runs,
    model_names,
    run_label,
    unique_results,
)

__all__ = [
    "HEADLINE",
    "Result",
    "distinguish",
    "find_results",
    "load_runs",
    "model_key",
    "model_names",
    "run_label",
    "transfer_matrices",
    "unique_results",
    "write_report",
]
