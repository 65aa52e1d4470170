"""run(cfg) with sharing presets: statistics in results.json and W&B, layout in the cache key."""

from __future__ import annotations

import json

import pytest
from wandb_records import logged_keys, run_files

from mtl_attack.models import enumerate_layouts
from mtl_attack.runner import run


def test_layout_by_index_writes_sharing_stats_to_results_and_wandb(tiny_cfg, tmp_path):
    results = run(tiny_cfg("sharing=layout", "sharing.index=1"))
    model = json.loads((tmp_path / "run" / "results.json").read_text())["model"]
    assert model == results["model"]
    assert model["layout"] == enumerate_layouts(3, 5)[1].as_lists() == [[[0], [1, 2]]] * 5
    assert model["sharing_degree"] == pytest.approx(1 / 3)
    assert 0 < model["params_shared"] < model["params_total"]
    keys = logged_keys(run_files(tmp_path / "run")[0])
    assert {"model/params_shared", "model/sharing_degree", "model/params_total"} <= keys


def test_layout_by_task_names_and_presets_get_their_own_checkpoints(tiny_cfg):
    blocks = ",".join(  # tasks by name or by index, mixed freely
        [
            "[[segment_semantic,normal,depth_zbuffer]]",
            "[[segment_semantic,normal],[depth_zbuffer]]",
            "[[segment_semantic],[normal],[depth_zbuffer]]",
            "[[0],[1],[2]]",
            "[[0],[1],[2]]",
        ]
    )
    named = run(tiny_cfg("logger=none", "sharing=layout", f"sharing.blocks=[{blocks}]"))
    assert named["model"]["layout"][:3] == [[[0, 1, 2]], [[0, 1], [2]], [[0], [1], [2]]]
    shared = run(tiny_cfg("logger=none", run="shared"))
    independent = run(tiny_cfg("logger=none", "sharing=independent", run="independent"))
    again = run(tiny_cfg("logger=none", "sharing=layout", "sharing.index=0", run="again"))
    assert shared["model"]["sharing_degree"] == 1.0
    assert independent["model"]["params_shared"] == 0
    checkpoints = {r["model"]["checkpoint"] for r in (named, shared, independent)}
    assert len(checkpoints) == 3
    # the same tree reached through another preset reuses the trained weights
    assert again["model"]["checkpoint"] == shared["model"]["checkpoint"]
    assert again["model"]["cache_hit"] is True


def test_bad_layout_index_is_a_clear_error(tiny_cfg):
    with pytest.raises(ValueError, match=r"sharing.index=99 is out of range: 3 tasks"):
        run(tiny_cfg("logger=none", "sharing=layout", "sharing.index=99"))
