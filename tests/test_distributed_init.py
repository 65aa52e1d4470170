"""init_from_env: a torchrun environment joins a process group even with one process (so a
one-GPU torchrun job runs the NCCL code paths); a plain process does not."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]

PROBE = (
    "import torch, torch.distributed as dist\n"
    "from mtl_attack.utils.distributed import init_from_env\n"
    "joined = init_from_env(torch.device('cpu'))\n"
    "group = (dist.get_backend(), dist.get_world_size()) if joined else (None, 1)\n"
    "print(joined, *group)\n"
    "if joined: dist.destroy_process_group()\n"
)


def probe(extra_env: dict[str, str]) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(extra_env)
    proc = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_one_process_torchrun_environment_joins_a_group():
    env = {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1"}
    assert probe(env | {"MASTER_PORT": str(free_port())}) == "True gloo 1"


def test_plain_process_stays_alone():
    assert probe({}) == "False None 1"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_more_processes_than_gpus_is_one_clear_line(tmp_path):
    gpus = torch.cuda.device_count()
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    cmd += [f"--nproc_per_node={gpus + 1}", str(ROOT / "run.py"), "attack=none", "logger=none"]
    cmd += [f"paths.output_dir={tmp_path}", "dataset.num_train=32", "dataset.num_test=8"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert f"local rank {gpus} has no GPU: this machine has {gpus}" in proc.stdout + proc.stderr
