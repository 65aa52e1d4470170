"""model=treemtl: both file formats of the original training code, refused globals, and a
one-line error for every wrong file."""

from __future__ import annotations

import sys

import pytest
import torch
from treemtl_checkpoints import (
    NYU,
    ORDERS,
    Marker,
    adam_and_step_lr,
    channels,
    original_names,
    pickled_layout,
    random_state,
    write,
)

from mtl_attack.models import load_treemtl
from mtl_attack.tasks import build_tasks


def test_both_file_formats_load_and_no_other_global_is_unpickled(tmp_path, monkeypatch):
    order = ORDERS[0]
    state = random_state(original_names(order, channels(NYU, 40), hidden=8))
    training = adam_and_step_lr(state)
    assert training["optimizer"]["state"][0]["exp_avg"].shape == (64, 3, 7, 7)
    older = write(tmp_path / "older.model", state, optimizer=training)
    with monkeypatch.context() as m:
        later = write(tmp_path / "later.model", state, pickled_layout(m, order, 3), training)
    assert "main" not in sys.modules  # nothing can import main.layout now
    with pytest.raises(Exception, match="main.layout.Layout"):
        torch.load(later, weights_only=True)  # what weights_only=True alone does with it
    tasks = build_tasks(NYU, 40)
    images = torch.rand(1, 3, 33, 33)
    outs = []
    for path, index in ((older, 0), (later, None)):
        model = load_treemtl(tasks, str(path), index).eval()
        with torch.no_grad():
            outs.append(model(images))
        assert model.source["layout_index"] == 0 and model.source["iter"] == 3999
    assert all(torch.equal(outs[1][t], outs[0][t]) for t in NYU)
    assert model.source["format"] == "with layout"
    # a layout object carrying anything else, or any other global, is still refused
    marker, small = tmp_path / "EXECUTED", {"backbone.mtl_blocks.0.x": torch.zeros(1)}
    with monkeypatch.context() as m:
        hook = {"hook": Marker(marker)}
        write(tmp_path / "evil.model", small, pickled_layout(m, order, 3, hook))
        write(tmp_path / "evil2.model", small, Marker(marker))
    for name in ("evil.model", "evil2.model"):
        with pytest.raises(ValueError, match="pickles the Python object posix.system") as err:
            load_treemtl(tasks, str(tmp_path / name), 0)
        assert "\n" not in str(err.value)
    assert not marker.exists()


def test_wrong_files_give_one_line_that_says_what_is_wrong(tmp_path, monkeypatch):
    nyu = build_tasks(NYU, 40)
    state49 = random_state(original_names(ORDERS[49], channels(NYU, 40), hidden=8))
    older = write(tmp_path / "older49.model", state49)
    with monkeypatch.context() as m:
        later = write(tmp_path / "later49.model", state49, pickled_layout(m, ORDERS[49], 3))
    two = original_names(ORDERS[0], channels(["segment_semantic", "depth_zbuffer"], 40), 8)
    c13 = original_names(ORDERS[0], channels(NYU, 13), 8)
    torchvision = {"conv1.weight": torch.zeros(64, 3, 7, 7), "fc.weight": torch.zeros(1000, 512)}
    cases = [
        (older, 0, "has 20 trunk nodes that do not fit model.layout_index=0 of 3 tasks "
         r".17 nodes.; layouts that fit: \[47, 49, 50\]"),
        (older, None, r"older format, which does not record its layout; set model.layout_index "
         r"\(layouts with its trunk structure: \[47, 49, 50\]"),
        (later, 47, "stores TreeMTL layout index 49 .* but model.layout_index=47; set "
         "model.layout_index=49"),
        (write(tmp_path / "two.model", random_state(two)), 0, r"has heads for tasks "
         r"\['segment_semantic', 'depth_zbuffer'\] but the dataset's tasks are"),
        (write(tmp_path / "c13.model", random_state(c13)), 0, "the segment_semantic head outputs "
         "13 channels but this dataset's segment_semantic needs 40"),
        (write(tmp_path / "tv.pth", torchvision), 0, "is not a TreeMTL Deeplab_ASPP_Layout "
         r"checkpoint: no 'backbone.mtl_blocks.\*' weights .found "
         r"\['conv1.weight', 'fc.weight'\]"),
    ]  # fmt: skip
    for path, index, message in cases:
        with pytest.raises(ValueError, match=message) as err:
            load_treemtl(nyu, str(path), index)
        assert "\n" not in str(err.value)
