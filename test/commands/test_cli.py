import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bac_ros.cli import main

from support import TINY


@pytest.fixture
def tiny_yaml(tmp_path):
    p = tmp_path / "tiny.yaml"
    p.write_text(yaml.safe_dump({"policy": TINY}))
    return p


def test_schedule_and_bench_end_to_end(tmp_path, tiny_yaml, capsys):
    out = tmp_path / "sched"
    rc = main(["schedule", "--config", str(tiny_yaml), "--checkpoint", "none", "--method", "uniform,acs-unified,acs-blockwise,bac,teacache",
               "--num-updates", "3", "--top-n", "2,3", "--observations", "4", "--teacache-observations", "2",
               "--out-dir", str(out)])
    assert rc == 0
    files = sorted(p.name for p in out.iterdir())
    assert "bac_s3.json" in files and "bac_s3.png" in files and "teacache_s3.json" in files
    assert "bac_s3_n2.json" in files  # a Bubbling Union n other than the default is in the name
    assert json.loads((out / "bac_s3_n2.json").read_text())["bua"]["top_n"] == 2
    assert (out / "bac_s3.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rc = main(["bench", "--config", str(tiny_yaml), "--checkpoint", "none", "--schedule", *map(str, sorted(out.glob("*.json"))),
               "--observations", "2", "--repeats", "1", "--out-dir", str(tmp_path / "bench"), "--profile"])
    assert rc == 0
    rows = json.loads((tmp_path / "bench" / "rows.json").read_text())
    # every row says where it came from: config, weights, the schedule file's hash, commit, command line
    assert all(r["config"] == "tiny" and r["commit"] and r["command"].startswith("bac") for r in rows)
    assert rows[0]["schedule_hash"] is None and all(len(r["schedule_hash"]) == 16 for r in rows[2:])
    assert [r["method"] for r in rows][:2] == ["full", "full-runtime"]
    assert {r["method"] for r in rows} >= {"uniform", "acs-unified", "acs-blockwise", "bac", "teacache"}
    assert sorted(r["variant"] for r in rows if r["method"] == "bac") == ["", " n=2"]
    for r in rows:
        assert set(r) >= {"method", "num_updates", "ms_median", "speedup", "gflops", "action_mse", "action_max_abs"}
        assert r["ms_median"] > 0 and r["gflops"] > 0
    full = rows[0]
    assert full["speedup"] == 1.0 and full["action_mse"] == 0.0
    assert rows[1]["action_max_abs"] == 0.0  # full schedule through the runtime is exact
    assert all(r["gflops"] < full["gflops"] for r in rows[2:])
    text = capsys.readouterr().out
    assert "speedup" in text and "fixed share" in text
    # the drift guard's reference: in every calibrated static schedule, and added to an existing one
    assert json.loads((out / "bac_s3.json").read_text())["calibration"]["reuse_error"]["observations"] == 4
    older = json.loads((out / "uniform_s3.json").read_text())
    del older["calibration"]["reuse_error"]
    (out / "uniform_s3.json").write_text(json.dumps(older))
    assert main(["schedule", "--config", str(tiny_yaml), "--checkpoint", "none", "--reference", str(out / "uniform_s3.json"),
                 "--observations", "3"]) == 0
    again = json.loads((out / "uniform_s3.json").read_text())
    assert again["blocks"] == older["blocks"] and again["calibration"]["reuse_error"]["mean"] > 0
    with pytest.raises(SystemExit, match="not teacache"):
        main(["schedule", "--config", str(tiny_yaml), "--checkpoint", "none", "--reference", str(out / "teacache_s3.json")])


def test_bad_schedule_is_a_clear_error(tmp_path, tiny_yaml, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": "bac-schedule/1", "method": "bac", "model": {"n_layer": 9},
                               "sampler": {"type": "ddim", "num_inference_steps": 8}, "blocks": {"L0.sa": [0]}}))
    rc = main(["bench", "--config", str(tiny_yaml), "--checkpoint", "none", "--schedule", str(bad), "--observations", "1", "--repeats", "1"])
    assert rc == 2
    assert "model.n_layer" in capsys.readouterr().err


def test_unknown_config_is_a_clear_error(capsys):
    assert main(["bench", "--config", "nonexistent"]) == 2
    assert "no policy config 'nonexistent'" in capsys.readouterr().err


def test_console_script_installed():
    exe = Path(sys.executable).parent / "bac"
    assert exe.exists(), "the `bac` console script is missing: `pip install -e .` did not run"
    r = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "schedule" in r.stdout and "bench" in r.stdout


def test_eval_merge_joins_parallel_runs(tmp_path, tiny_yaml):
    row = {"mode": "sync", "method": "full", "num_updates": 20, "episodes": 4, "success_rate": 0.75,
           "speedup": 1.0, "gflops": 0.5, "inference_hz": 18.0, "action_mse": 0.0}
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps([row]))
    b.write_text(json.dumps([{**row, "method": "bac", "num_updates": 4, "success_rate": 0.5, "speedup": 3.5}]))
    rc = main(["eval", "--config", str(tiny_yaml), "--checkpoint", "none", "--merge", f"{a},{b}", "--out-dir", str(tmp_path / "r")])
    assert rc == 0
    rows = json.loads((tmp_path / "r" / "eval.json").read_text())
    assert [(r["method"], r["success_rate"]) for r in rows] == [("full", 0.75), ("bac", 0.5)]
    md = (tmp_path / "r" / "eval.md").read_text()
    assert "| sync | bac | 4 | 4 | 50% [15%, 85%] | 3.50 |" in md and (tmp_path / "r" / "eval.png").exists()


def test_output_goes_to_a_dated_run_folder_by_default(tmp_path, tiny_yaml, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["schedule", "--config", str(tiny_yaml), "--checkpoint", "none", "--method", "uniform", "--num-updates", "2",
                 "--observations", "2", "--name", "try"]) == 0
    (run,) = (tmp_path / "runs" / "schedule").iterdir()
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}_\d{6}_try", run.name) and (run / "uniform_s2.json").is_file()


def test_eval_finds_bac_schedules_by_their_bubbling_union_n():
    from bac_ros.policy.schedule import schedule_file_name
    from bac_ros.analysis.render import method_label as label

    assert schedule_file_name("bac", 14, top_n=1) == "bac_s14_n1.json"
    assert schedule_file_name("bac", 14) == "bac_s14.json"
    assert schedule_file_name("uniform", 18, top_n=1) == "uniform_s18.json"
    assert schedule_file_name("acs-unified", 4, "l1", force_last=True) == "acs-unified_s4_last_l1.json"
    assert label({"method": "bac", "top_n": 1}) == "bac n=1"
    assert label({"method": "bac", "top_n": 3}) == label({"method": "bac"}) == "bac"
    assert label({"method": "bac", "top_n": 1, "similarity": "l1"}) == "bac n=1 (l1)"
