"""Read what a W&B run wrote to its ``run-<id>.wandb`` file (a LevelDB-style record log of
protobuf ``Record`` messages). Lets tests assert on real offline runs without a server."""

from __future__ import annotations

import struct
import time
from pathlib import Path

from wandb.proto import wandb_internal_pb2

BLOCK = 32768
HEADER = struct.Struct("<4sHB")  # ":W&B", magic, version
RECORD = struct.Struct("<IHB")  # crc32, length, type (1 full, 2 first, 3 middle, 4 last)


def read_records(path: str | Path) -> list[wandb_internal_pb2.Record]:
    data = Path(path).read_bytes()
    ident, _, _ = HEADER.unpack_from(data, 0)
    assert ident == b":W&B", f"{path} is not a W&B run file"
    pos, chunks, records = HEADER.size, [], []
    while pos + RECORD.size <= len(data):
        if BLOCK - pos % BLOCK < RECORD.size:  # block trailer padding
            pos += BLOCK - pos % BLOCK
            continue
        _, length, kind = RECORD.unpack_from(data, pos)
        pos += RECORD.size
        if kind == 0 and length == 0:
            break
        chunks.append(data[pos : pos + length])
        pos += length
        if kind in (1, 4):
            rec = wandb_internal_pb2.Record()
            rec.ParseFromString(b"".join(chunks))
            records.append(rec)
            chunks = []
    return records


def _key(item) -> str:
    return item.key or "/".join(item.nested_key)


def closed_records(run_file: str | Path, timeout: float = 30.0) -> list:
    """The run's records once its final ``exit`` record is on disk: W&B's service can still be
    writing the offline file when ``run.finish()`` returns."""
    deadline = time.monotonic() + timeout
    while True:
        records = read_records(run_file)
        done = records and records[-1].WhichOneof("record_type") == "exit"
        if done or time.monotonic() > deadline:
            return records
        time.sleep(0.1)


def logged_keys(run_file: str | Path) -> set[str]:
    """Every history and summary key the run logged."""
    keys: set[str] = set()
    for rec in closed_records(run_file):
        kind = rec.WhichOneof("record_type")
        if kind == "history":
            keys.update(_key(i) for i in rec.history.item)
        elif kind == "summary":
            keys.update(_key(i) for i in rec.summary.update)
    return keys


def run_files(root: str | Path) -> list[Path]:
    return sorted(Path(root).rglob("run-*.wandb"))


def logged_under(root: str | Path) -> tuple[set[str], set[str]]:
    """Every history/summary key and every config key of the W&B run files under ``root``."""
    keys: set[str] = set()
    config: set[str] = set()
    for path in run_files(root):
        keys |= logged_keys(path)
        for rec in closed_records(path):
            if rec.HasField("run"):
                config |= {item.key for item in rec.run.config.update}
    return keys, config
