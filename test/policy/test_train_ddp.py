"""`bac train` under torchrun: two CPU processes (gloo) train one model."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = """
import hashlib, json, os, sys
import numpy as np, torch
sys.path.insert(0, {test_dir!r})
from support import tiny_config
from bac_ros.policy.diffusion import DiffusionPolicy
from bac_ros.policy.train import TrainConfig, train

class Source:
    def __len__(self):
        return 10
    def batch(self, ids):
        r = np.random.default_rng(int(ids.sum()))
        b = len(ids)
        return (r.integers(0, 255, (b, 2, 32, 32, 3), dtype=np.uint8),
                r.standard_normal((b, 2, 8)).astype(np.float32), r.standard_normal((b, 8, 8)).astype(np.float32))

torch.set_num_threads(1)
torch.manual_seed(int(os.environ["RANK"]))  # different initial weights: DDP must start every process from rank 0's
policy = DiffusionPolicy(tiny_config())
log = train(policy, Source(), TrainConfig(iterations=4, batch_size=4, warmup=1), {out!r})
digest = hashlib.sha256(b"".join(v.numpy().tobytes() for v in policy.state_dict().values())).hexdigest()
with open(os.path.join({out!r}, "rank" + os.environ["RANK"] + ".json"), "w") as f:
    json.dump({{"digest": digest, "processes": log["processes"], "iterations": log["iterations_done"]}}, f)
"""


@pytest.mark.slow
def test_two_processes_keep_one_model_and_rank_0_writes_it(tmp_path):
    out = tmp_path / "ck"
    out.mkdir()
    script = tmp_path / "ddp.py"
    script.write_text(SCRIPT.format(test_dir=str(Path(__file__).resolve().parents[1]), out=str(out)))
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                        str(script)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    ranks = [json.loads((out / f"rank{i}.json").read_text()) for i in (0, 1)]
    assert ranks[0]["digest"] == ranks[1]["digest"]  # same weights after 4 steps on different batches
    assert all(x["processes"] == 2 and x["iterations"] == 4 for x in ranks)
    assert (out / "model.safetensors").is_file() and json.loads((out / "train_log.json").read_text())["processes"] == 2
