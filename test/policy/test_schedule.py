import json

import pytest

from bac_ros.policy.schedule import Schedule, ScheduleError

from support import tiny_config


def _bac(cfg):
    blocks = {b: [0, 3, 5] for b in cfg.block_ids}
    blocks["L0.ffn"] = [0, 1, 7]
    return Schedule.create(cfg, "bac", blocks, num_updates=3, bua={"top_n": 2, "blocks": ["L0.sa", "L1.ca"]},
                           calibration={"observations": 4, "similarity": "cosine"})


def test_round_trip(tmp_path, tiny_cfg):
    s = _bac(tiny_cfg)
    path = s.save(tmp_path / "s.json")
    d = json.loads(path.read_text())
    assert d["format"] == "bac-schedule/1" and d["model"]["n_layer"] == 2
    assert d["sampler"] == {"type": "ddim", "num_inference_steps": 8}
    back = Schedule.load(path, tiny_cfg)
    assert back == s
    mask = back.update_mask(tiny_cfg.block_ids)
    assert mask.shape == (8, 6) and mask[:, 2].nonzero()[0].tolist() == [0, 1, 7]


def _write(tmp_path, d):
    p = tmp_path / "bad.json"
    p.write_text(json.dumps(d))
    return p


@pytest.mark.parametrize("mutate, field", [
    (lambda d: d.update(format="other/1"), "format"),
    (lambda d: d.update(method="magic"), "method"),
    (lambda d: d["model"].update(n_layer=3), "model.n_layer"),
    (lambda d: d["model"].update(config_hash="deadbeef"), "model.config_hash"),
    (lambda d: d["sampler"].update(num_inference_steps=10), "sampler.num_inference_steps"),
    (lambda d: d["sampler"].update(type="ddpm"), "sampler.type"),
    (lambda d: d["blocks"].pop("L1.ffn"), "blocks"),
    (lambda d: d["blocks"].update({"L9.sa": [0]}), "blocks"),
    (lambda d: d["blocks"].update({"L0.sa": [0, 8]}), "blocks.L0.sa"),
    (lambda d: d["blocks"].update({"L0.sa": [1, 3]}), "blocks.L0.sa"),
    (lambda d: d["blocks"].update({"L0.sa": [0, 3, 2]}), "blocks.L0.sa"),
    (lambda d: d["blocks"].update({"L0.sa": [0, "3"]}), "blocks.L0.sa"),
    (lambda d: d.update(num_updates=0), "num_updates"),
    (lambda d: d.pop("sampler"), "sampler"),
    (lambda d: d["bua"].update(blocks=["L7.ca"]), "bua.blocks"),
    (lambda d: d.update(reuse="taylor"), "reuse"),
])
def test_validation_names_the_field(tmp_path, tiny_cfg, mutate, field):
    d = _bac(tiny_cfg).to_dict()
    mutate(d)
    with pytest.raises(ScheduleError, match=f"'{field}'"):
        Schedule.load(_write(tmp_path, d), tiny_cfg)


def test_schedule_error_is_value_error_and_names_file(tmp_path, tiny_cfg):
    p = tmp_path / "x.json"
    p.write_text("{not json")
    with pytest.raises(ValueError, match="x.json"):
        Schedule.load(p, tiny_cfg)
    with pytest.raises(ScheduleError, match="not found"):
        Schedule.load(tmp_path / "missing.json", tiny_cfg)


def test_other_model_is_rejected(tmp_path, tiny_cfg):
    path = _bac(tiny_cfg).save(tmp_path / "s.json")
    other = tiny_config(n_emb=64)
    with pytest.raises(ScheduleError, match="config_hash"):
        Schedule.load(path, other)
    deeper = tiny_config(n_layer=3)
    with pytest.raises(ScheduleError, match="n_layer"):
        Schedule.load(path, deeper)


def test_teacache_schedule(tmp_path, tiny_cfg):
    s = Schedule.create(tiny_cfg, "teacache", {}, num_updates=3, teacache={"threshold": 0.2, "mean_updates": 3.0})
    back = Schedule.load(s.save(tmp_path / "t.json"), tiny_cfg)
    assert back.is_dynamic and back.teacache["threshold"] == 0.2
    d = s.to_dict()
    d["teacache"] = {}
    with pytest.raises(ScheduleError, match="teacache.threshold"):
        Schedule.from_dict(d, tiny_cfg)


def test_forecast_reuse_round_trips_and_is_static_only(tmp_path, tiny_cfg):
    s = _bac(tiny_cfg)
    s.reuse = "forecast"
    back = Schedule.load(s.save(tmp_path / "f.json"), tiny_cfg)
    assert back.reuse == "forecast" and back.label == "bac+forecast(S=3)"
    assert "reuse" not in _bac(tiny_cfg).to_dict()  # copy, the paper's reuse, is the default and not written
    d = Schedule.create(tiny_cfg, "teacache", {}, num_updates=3,
                        teacache={"threshold": 0.2, "mean_updates": 3.0}).to_dict()
    d["reuse"] = "forecast"
    with pytest.raises(ScheduleError, match="static schedules only"):
        Schedule.from_dict(d, tiny_cfg)


def test_weights_mismatch_warns(tiny_cfg):
    s = _bac(tiny_cfg)
    s.calibration["weights"] = "abc"
    with pytest.warns(UserWarning, match="recalibrate"):
        s.check_weights("def")


def test_find_schedule_by_name_path_or_full(tmp_path):
    from bac_ros.policy.config import PolicyConfig
    from bac_ros.policy.schedule import find_schedule, schedule_dir

    cpu = PolicyConfig.load("cpu")
    assert find_schedule("full", cpu) is None
    by_name = find_schedule("bac_s7", cpu)
    assert by_name.method == "bac" and by_name.num_updates == 7
    assert find_schedule("bac_s7.json", cpu).blocks == by_name.blocks
    assert find_schedule(str(schedule_dir(cpu) / "bac_s7.json"), cpu).blocks == by_name.blocks
    with pytest.raises(ScheduleError, match="there: bac_s12, bac_s7"):
        find_schedule("bac_s99", cpu)
    with pytest.raises(ScheduleError, match="not a file"):
        find_schedule(str(tmp_path / "missing.json"), cpu)
