"""``python run.py attack=standard`` end to end on tiny configs: results.json carries one
verdict per eps (the interface scripts/leaderboard.py reads), the log and W&B carry the verdict
and its flags, and a model=external model whose forward is not differentiable is flagged."""

from __future__ import annotations

import json
import logging

import pytest
from wandb_records import logged_keys, run_files

from mtl_attack.runner import run
from tests.attack_setup import single_thread
from tests.standard_setup import RoundWithoutGradient
from tests.test_external_model import OUTPUTS_ARG, HalfResNet, external, trained_weights

one_thread = pytest.fixture(autouse=True, scope="module")(single_thread)
VERDICT_KEYS = {
    "protocol", "version", "budget", "eps", "min_degradation", "avg_degradation", "tasks",
    "flags", "queries", "seconds", "members", "model", "sources",
}  # fmt: skip


class RoundedHalfResNet(HalfResNet):
    """A user's model that rounds its input to 8 bits without a gradient."""

    def forward(self, x):
        return super().forward(RoundWithoutGradient.apply(x))


def test_standard_run_writes_one_verdict_per_eps(tiny_cfg, tmp_path, caplog):
    cfg = tiny_cfg("attack=standard", "attack.budget=smoke", "attack.eps=[2,4]")
    with caplog.at_level(logging.INFO, logger="mtl_attack"):
        results = run(cfg)
    on_disk = json.loads((tmp_path / "run" / "results.json").read_text())
    assert on_disk["verdicts"] == json.loads(json.dumps(results["verdicts"]))
    first, second = on_disk["verdicts"]
    assert set(first) == VERDICT_KEYS and [first["eps"], second["eps"]] == [2.0, 4.0]
    assert first["protocol"] == "standard" and first["version"] == 1
    assert first["budget"] == "smoke" and first["queries"] == 24 * 10 // 2
    assert first["members"] == [
        "single(segment_semantic)", "single(normal)", "single(depth_zbuffer)", "total", "dgba",
        "minmax_metric", "single_jsd(segment_semantic)", "single_segpgd(segment_semantic)",
    ]  # fmt: skip
    assert (
        first["model"]["model"] == results["model"]["key"]
        and "weights_sha256" not in first["model"]
    )
    assert set(first["tasks"]) == set(results["clean"])
    views = {e["variant"] for e in on_disk["attacks"] if e["eps"] == 2}
    assert {"mean", "min", "per_task", "member/total"} <= views
    keys = logged_keys(run_files(tmp_path / "run")[0])
    assert {"standard/eps2/min_degradation", "standard/eps4/tasks/normal/degradation"} <= keys
    assert "standard/eps4/queries" in keys
    assert "standard protocol v1" not in caplog.text  # printed, not logged ...
    assert "attack standard/min/apgd eps=4" in caplog.text  # ... the entries are logged


def test_non_differentiable_external_model_is_flagged_everywhere(tiny_cfg, tmp_path, caplog):
    path = tmp_path / "half.pt"
    factory = f"model.factory._target_={__name__}.RoundedHalfResNet"
    extra = ["attack=standard", "attack.budget=smoke", "attack.eps=[8]", OUTPUTS_ARG]
    cfg = tiny_cfg(*external(path, *extra), factory, "logger=wandb")
    trained_weights(cfg, path)
    with caplog.at_level(logging.WARNING, logger="mtl_attack"):
        results = run(cfg)
    (verdict,) = json.loads((tmp_path / "run" / "results.json").read_text())["verdicts"]
    flags = {f["flag"]: f["message"] for f in verdict["flags"]}
    assert {"zero_gradient", "gradient_masking"} <= set(flags)
    assert verdict["model"]["weights_sha256"] == results["model"]["imported"]["sha256"]
    assert f"gradient_masking: {flags['gradient_masking']}" in caplog.text  # the log
    keys = logged_keys(run_files(tmp_path / "run")[0])  # W&B
    assert {"standard/eps8/flags/gradient_masking", "standard/eps8/flags/zero_gradient"} <= keys
