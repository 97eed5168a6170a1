"""Tensor files (``save_tensors``) are the same bytes for the same tensors and description in
every process: safetensors writes its metadata in a per-process hash order, and a run's file
hashes (stage reuse, condition-store contexts, the manifest) must not depend on it."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import torch

from emoneuron.recording.statistics import load_tensors, save_tensors

WRITE = """
import sys, torch
from emoneuron.recording.statistics import save_tensors
tensors = {"weight": torch.arange(6.).reshape(2, 3), "n": torch.ones(3, dtype=torch.int64)}
save_tensors(sys.argv[1], tensors,
             {"kind": "probe", "format": "1", "layers": [0, 1], "model": "tiny", "note": "é/ü",
              "seed": 7, "folds": 5, "l2": [0.1, 1.0]})
"""


def test_the_same_tensors_give_the_same_bytes_in_every_process(tmp_path: Path) -> None:
    digests = set()
    for run in range(4):
        path = tmp_path / f"t{run}.safetensors"
        subprocess.run([sys.executable, "-c", WRITE, str(path)], check=True)
        digests.add(hashlib.sha256(path.read_bytes()).hexdigest())
    assert len(digests) == 1


def test_a_written_file_reads_back_whole(tmp_path: Path) -> None:
    path = tmp_path / "t.safetensors"
    weight = torch.randn(3, 4, dtype=torch.float64)
    save_tensors(path, {"weight": weight, "bias": torch.zeros(2)},
                 {"kind": "probe", "note": "é/ü", "l2": [0.1, 1.0]})
    header, tensors = load_tensors(path, "a probe file", "that Probe.save writes")
    assert header == {"kind": "probe", "note": "é/ü", "l2": "[0.1, 1.0]"}
    assert torch.equal(tensors["weight"], weight) and torch.equal(tensors["bias"], torch.zeros(2))
