"""`bac eval`: paired tables across runs, episodes on two workers, an interrupted run resumed."""
import json

import numpy as np
import pytest
import yaml

from bac_ros.cli import main
from bac_ros.analysis.eval_rows import paired
from support import TINY


def _row(method, s, first, succeeded):
    return {"mode": "sync", "method": method, "num_updates": s, "seeds": [first, first + len(succeeded) - 1],
            "succeeded": succeeded}


def test_paired_joins_runs_on_other_seeds_and_pairs_by_seed():
    rows = [_row("full", 20, 0, [1, 1, 0, 1]), _row("bac", 7, 0, [1, 0, 0, 1, 1, 1]), _row("full", 20, 4, [1, 0])]
    (p,) = paired(rows, margin=0.05)
    # seeds 0..5: full 1 1 0 1 1 0, bac 1 0 0 1 1 1 -> both {0, 3, 4}, only full {1}, only bac {5}, neither {2}
    assert (p["a"], p["b"], p["paired"], p["n_a"]) == ("full", "bac S=7", True, 6)
    assert tuple(p["table"]) == (3, 1, 1, 1) and p["difference"] == 0.0
    assert p["test"] == "McNemar exact" and p["p_value"] == 1.0
    assert p["verdict"] == "too few episodes to tell"


def test_paired_compares_each_mode_apart_and_needs_two_methods():
    rows = [_row("full", 20, 0, [1] * 30), {**_row("full", 20, 0, [1] * 30), "mode": "realtime"}]
    assert paired(rows) == []
    rows.append({**_row("bac", 7, 0, [1] * 30), "mode": "realtime"})
    (p,) = paired(rows)
    assert p["mode"] == "realtime" and tuple(p["table"]) == (30, 0, 0, 0)
    # all success on both: the interval is +-(1 - Wilson's lower bound for 30/30) = +-11.35 points, too wide
    assert p["ci"][0] == pytest.approx(-0.1135, abs=2e-4) and p["ci"][1] == pytest.approx(0.1135, abs=2e-4)
    assert p["p_value"] == 1.0 and p["verdict"] == "too few episodes to tell"


def test_a_latency_sweep_pairs_methods_within_each_latency():
    from bac_ros.sim.episode_worker import episode_modes, split_mode

    assert episode_modes("sync", None) == ["sync"] and episode_modes("realtime", None) == ["realtime"]
    assert episode_modes("both", [0, 67.5]) == ["sync", "realtime+0ms", "realtime+67.5ms"]
    assert split_mode("realtime+67.5ms") == ("realtime", 67.5) and split_mode("realtime") == ("realtime", None)
    at = lambda row, ms: {**row, "mode": "realtime", "latency_ms": ms}  # noqa: E731
    rows = [at(_row("full", 20, 0, [1] * 10), 0), at(_row("bac", 7, 0, [1] * 10), 0),
            at(_row("full", 20, 0, [1] * 10), 100), at(_row("bac", 7, 0, [0] * 5 + [1] * 5), 100)]
    by_mode = {p["mode"]: p for p in paired(rows)}
    assert set(by_mode) == {"realtime +0 ms", "realtime +100 ms"}
    assert tuple(by_mode["realtime +0 ms"]["table"]) == (10, 0, 0, 0)
    assert tuple(by_mode["realtime +100 ms"]["table"]) == (5, 5, 0, 0)


@pytest.mark.slow
def test_two_workers_then_an_interrupted_run_resumed(tmp_path, capsys):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump({"policy": TINY}))
    out = tmp_path / "run"
    base = ["eval", "--config", str(cfg), "--checkpoint", "none", "--methods", "full", "--episodes", "3",
            "--max-time", "0.6", "--bench-observations", "2", "--out-dir", str(out)]
    assert main(base + ["--workers", "2", "--hostname", "127.0.0.61"]) == 0
    (row,) = json.loads((out / "eval.json").read_text())
    assert row["episodes"] == 3 and row["seed_list"] == [0, 1, 2] and row["workers"] == 2
    log = (out / "episodes.jsonl").read_text().splitlines()
    assert len(log) == 4 and "identity" in json.loads(log[0])
    assert sorted(json.loads(line)["seed"] for line in log[1:]) == [0, 1, 2]

    # stopped after two episodes, the last line half written: --resume runs only what is missing
    (out / "episodes.jsonl").write_text("\n".join(log[:3]) + "\n" + log[3][:20])
    capsys.readouterr()
    assert main(["eval", "--resume", str(out), "--hostname", "127.0.0.64"]) == 0
    assert "2 of 3 episodes done" in capsys.readouterr().err
    (row,) = json.loads((out / "eval.json").read_text())
    assert row["episodes"] == 3 and row["workers"] == 1

    # a log written with other arguments is refused, nothing is run or lost
    header = json.loads(log[0])
    header["identity"]["max_time"] = 9.0
    (out / "episodes.jsonl").write_text("\n".join([json.dumps(header)] + log[1:]) + "\n")
    capsys.readouterr()
    assert main(["eval", "--resume", str(out)]) == 2
    assert "other arguments" in capsys.readouterr().err
    assert len((out / "episodes.jsonl").read_text().splitlines()) == 4


@pytest.mark.slow
def test_the_drift_guards_closed_loop_reference_is_measured_on_the_schedules_own_episodes(tmp_path, capsys):
    from bac_ros.policy.config import PolicyConfig
    from bac_ros.drift.guard import DriftSettings
    from bac_ros.drift.reference import OBSERVATION_STATISTIC, SHADOW_STATISTIC, observation_reference, shadow_reference
    from bac_ros.policy.schedule import Schedule

    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump({"policy": TINY}))
    common = ["--config", str(cfg), "--checkpoint", "none"]
    assert main(["schedule", *common, "--method", "uniform", "--num-updates", "3", "--observations", "2",
                 "--out-dir", str(tmp_path)]) == 0
    path = tmp_path / "uniform_s3.json"
    lab = tmp_path / "lab.yaml"  # h is printed for the parameters the robot will run with
    lab.write_text(yaml.safe_dump({"policy_node": {"ros__parameters": {"rate_hz": 15.0, "drift_check_every": 3}}}))
    capsys.readouterr()
    assert main(["schedule", *common, "--reference", str(path), "--closed-loop", "2", "--max-time", "0.6",
                 "--hostname", "127.0.0.66", "--params", str(lab)]) == 0
    assert f"settings of {lab} (a check every 0.20 s of robot time" in capsys.readouterr().out
    sched = Schedule.load(path, PolicyConfig.load(str(cfg)))
    loop = sched.calibration["shadow_closed_loop"]
    assert loop["seeds"] == [400000, 400001] and loop["episodes_run"] == 2
    assert loop["checks"] == sum(len(e) for e in loop["episodes"]) >= 4  # a check at every inference
    ref = shadow_reference(sched)
    assert ref.source == "closed loop" and ref.median > 0 and ref.log_sd > 0
    d = DriftSettings()
    assert ref.threshold(d.drift_cusum_k, d.drift_check_every, d.drift_false_alarm_rate) >= 1.0
    assert sched.calibration["shadow_deviation"]["median"] > 0  # the demonstrations' reference is kept
    assert loop["statistic"] == sched.calibration["shadow_deviation"]["statistic"] == SHADOW_STATISTIC
    tiny = PolicyConfig.load(str(cfg))
    assert loop["inference_period_s"] == pytest.approx(tiny.n_action_steps * tiny.action_dt)  # sync episodes
    # the same checks' observations: the encoder's features, each episode scored against the other's fit
    obs = sched.calibration["observation_closed_loop"]
    assert obs["statistic"] == OBSERVATION_STATISTIC and obs["folds"] == 2 and obs["seeds"] == loop["seeds"]
    assert [len(e) for e in obs["episodes"]] == [len(e) for e in loop["episodes"]]
    width = tiny.n_obs_steps * (tiny.encoder.image_feature_dim + tiny.encoder.state_dim)
    assert len(obs["mean"]) == width and np.asarray(obs["whitening"]).shape == (width, width)
    assert observation_reference(sched).signal.log_sd > 0
    # a reference measured on another statistic: refused by the guard, dropped (closed loop) or re-measured
    del loop["statistic"], sched.calibration["shadow_deviation"]["statistic"]
    sched.save(path)
    with pytest.raises(ValueError, match="gripper included"):
        shadow_reference(Schedule.load(path, tiny))
    assert main(["schedule", *common, "--reference", str(path)]) == 0
    again = Schedule.load(path, tiny).calibration
    assert "shadow_closed_loop" not in again and again["shadow_deviation"]["statistic"] == SHADOW_STATISTIC
    assert "observation_closed_loop" not in again  # measured on the same episodes: dropped with them


def test_the_drift_guard_checks_as_far_apart_in_robot_time_as_policy_nodes(tmp_path):
    from bac_ros.sim.episode_worker import EpisodeSpec, check_period_s, policy_params

    def period(spec):
        return check_period_s(policy_params(spec))

    # the package's parameters: policy_node's defaults, a check every 10th inference at 30 Hz
    assert period(EpisodeSpec()) == pytest.approx(1 / 3)
    params = tmp_path / "lab.yaml"
    params.write_text(yaml.safe_dump({"policy_node": {"ros__parameters": {"rate_hz": 15.0, "drift_check_every": 5}}}))
    assert period(EpisodeSpec(params=str(params))) == pytest.approx(1 / 3)
    # bac schedule's closed-loop reference: a check at every inference
    assert period(EpisodeSpec(drift_overrides={"drift_check_every": 1})) == pytest.approx(1 / 30)


def test_what_would_settle_a_comparison_by_hand():
    from bac_ros.analysis.render import episodes_to_tell

    p = {"ci": (-0.056, 0.045), "difference": -0.005, "margin": 0.05, "n_a": 200, "n_b": 200, "paired": True}
    # half-width 5.05 points against 4.5 points of room: 200 x (5.05 / 4.5)^2 = 252 -> 300
    assert "about 300 episodes per side" in episodes_to_tell(p) and "--episodes 300" in episodes_to_tell(p)
    assert "reaches the margin" in episodes_to_tell({**p, "difference": -0.06})
    assert "--episodes" not in episodes_to_tell({**p, "paired": False, "n_b": 20, "n_a": 20})


@pytest.mark.slow
def test_episodes_through_a_local_ray(tmp_path):
    pytest.importorskip("ray")
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump({"policy": TINY}))
    out = tmp_path / "run"
    assert main(["eval", "--config", str(cfg), "--checkpoint", "none", "--methods", "full", "--episodes", "2",
                 "--max-time", "0.6", "--bench-observations", "2", "--ray-address", "local", "--workers", "1",
                 "--hostname", "127.0.0.68", "--out-dir", str(out)]) == 0
    (row,) = json.loads((out / "eval.json").read_text())
    assert row["ray"] and row["episodes"] == 2 and row["seed_list"] == [0, 1]
    episodes = [json.loads(line) for line in (out / "episodes.jsonl").read_text().splitlines()[1:]]
    assert sorted(e["seed"] for e in episodes) == [0, 1] and all(e["chunks"] >= 1 for e in episodes)


def test_a_rows_drift_fields_say_which_signal_raised_each_episodes_alarm():
    from bac_ros.analysis.eval_rows import drift_fields

    def check(state, alarm="", obs_z=float("nan"), dense=False):
        return {"dense": dense, "ratio": 1.0, "reuse": 1.0, "state": state, "observation_z": obs_z, "alarm": alarm}

    drift = [[check("ok", obs_z=0.0), check("warn", obs_z=2.0), check("dense", "observation", 3.0)],
             [check("ok"), check("dense", "shadow"), check("dense", dense=True)],
             [check("ok", obs_z=1.0)]]
    f = drift_fields(drift)
    assert f["drift_alarm_episodes"] == 2 and f["drift_first_alarm_check"] == [3, 2, None]
    assert f["drift_first_alarm_signal"] == ["observation", "shadow", None]
    assert f["drift_observation_z_median"] == 1.5  # of the measured ones: 0, 2, 3, 1
    assert f["dense_share"] == pytest.approx(1 / 7) and f["drift_checks_per_episode"] == [3, 3, 1]


def test_an_own_checkpoint_needs_its_own_schedules():
    """Issue 36: `bac eval --checkpoint runs/mine` without --schedule-dir evaluated the shipped schedules,
    calibrated on other weights, with only a warning. It is an error naming what to run; full alone needs none."""
    import argparse

    from bac_ros.commands.eval import _schedules
    from bac_ros.policy.config import PolicyConfig

    cfg = PolicyConfig.load("cpu")
    args = argparse.Namespace(checkpoint="runs/mine", schedule_dir=None, methods=["full", "bac"], num_updates=[7],
                              similarity="cosine", top_n=3, reuse="copy", config="cpu")
    with pytest.raises(SystemExit, match="--schedule-dir"):
        _schedules(args, cfg)
    assert _schedules(argparse.Namespace(**{**vars(args), "methods": ["full"]}), cfg) == [("full", cfg.num_steps, None)]
    shipped = _schedules(argparse.Namespace(**{**vars(args), "checkpoint": "auto"}), cfg)
    assert [m for m, _, _ in shipped] == ["full", "bac"]


def test_a_method_is_placed_at_its_measured_latency_between_the_swept_ones(tmp_path):
    """Success read off the sweep at a computer's latency: linear between the two latencies around it, None
    outside the sweep (worked by hand: 40 ms lies 0.4 of the way from 0 ms at 0.9 to 100 ms at 0.4: 0.7)."""
    from bac_ros.analysis.eval_rows import place_at_latency

    rows = [{"method": "bac", "num_updates": 7, "mode": "realtime", "latency_ms": ms, "success_rate": rate}
            for ms, rate in ((0.0, 0.9), (100.0, 0.4), (200.0, 0.2))]
    placed = {p["computer"]: p for p in place_at_latency(rows, {"bac S=7": {"cpu": 40.0, "h200": 3.0, "slow": 250.0}})}
    assert placed["cpu"]["success_rate"] == pytest.approx(0.7) and placed["cpu"]["between"] == (0.0, 100.0)
    assert placed["h200"]["success_rate"] == pytest.approx(0.9 - 0.5 * 0.03)
    assert placed["slow"]["success_rate"] is None and placed["slow"]["between"] is None
    from bac_ros.analysis.render import plot_success_vs_latency

    png = plot_success_vs_latency([{**r, "episodes": 100} for r in rows], tmp_path / "latency.png",
                                  list(placed.values()))
    assert png.stat().st_size > 10_000
