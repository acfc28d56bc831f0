"""DiffusionPolicy: training step and checkpoints, relative actions, state history, the inference entry point."""
import json

import numpy as np
import pytest
import torch

from support import tiny_config


def test_one_training_step_and_checkpoint(tmp_path):
    from bac_ros.policy.diffusion import DiffusionPolicy
    from bac_ros.policy.train import TrainConfig, train

    cfg = tiny_config()

    class Source:
        def __len__(self):
            return 10

        def batch(self, ids):
            b = len(ids)
            return (np.random.randint(0, 255, (b, 2, 32, 32, 3), dtype=np.uint8),
                    np.random.randn(b, 2, 8).astype(np.float32), np.random.randn(b, 8, 8).astype(np.float32))

    policy = DiffusionPolicy(cfg)
    before = {k: v.clone() for k, v in policy.state_dict().items()}
    log = train(policy, Source(), TrainConfig(iterations=3, batch_size=4, warmup=1, noise_samples=2), tmp_path / "ck")
    assert log["iterations_done"] == 3 and all(np.isfinite(log["loss"]))
    assert any(not torch.equal(before[k], v) for k, v in policy.state_dict().items())
    assert (tmp_path / "ck" / "loss.png").exists() and json.loads((tmp_path / "ck" / "train_log.json").read_text())
    loaded = DiffusionPolicy.load(tmp_path / "ck")
    assert loaded.weights_id != "init" and loaded.cfg == cfg
    img = torch.rand(1, 2, 3, 32, 32)
    st = torch.randn(1, 2, 8)
    noise = torch.randn(1, 8, 8)
    a = loaded.predict(img, st, noise=noise.clone())
    b = DiffusionPolicy.load(tmp_path / "ck").predict(img, st, noise=noise.clone())
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="not"):
        DiffusionPolicy.load(tmp_path / "ck", tiny_config(n_emb=64))
    # the same weights sampled another way (DDPM, every training step): loads; its schedules are its own
    sampler_all = {**cfg.sampler.__dict__, "type": "ddpm", "num_inference_steps": 50}
    other = tiny_config(name="tiny_ddpm_all", weights=cfg.name, sampler=sampler_all)
    assert other.weights_hash == cfg.weights_hash and other.config_hash != cfg.config_hash
    assert other.weights_name == cfg.name and cfg.weights_name == cfg.name
    resampled = DiffusionPolicy.load(tmp_path / "ck", other)
    assert len(resampled.scheduler.timesteps) == 50 and resampled.weights_id == loaded.weights_id
    with pytest.raises(ValueError, match="not"):  # the training noise schedule is part of the weights
        DiffusionPolicy.load(tmp_path / "ck", tiny_config(sampler={**sampler_all, "num_train_timesteps": 60, "num_inference_steps": 8}))
    # warm start across n_obs_steps: shared tensors copied, the condition embedding keeps time + newest token
    one, fresh = DiffusionPolicy.warm_start(tmp_path / "ck", tiny_config(n_obs_steps=1))
    assert fresh == []
    old = loaded.state_dict()["model.cond_pos_emb"]
    assert torch.equal(one.state_dict()["model.cond_pos_emb"], torch.cat([old[:, :1], old[:, -1:]], dim=1))
    assert torch.equal(one.state_dict()["model.pos_emb"], loaded.state_dict()["model.pos_emb"])
    _, fresh = DiffusionPolicy.warm_start(tmp_path / "ck", tiny_config(n_emb=64))
    assert "model.pos_emb" in fresh


def test_relative_actions_round_trip_and_normalise_offsets():
    from bac_ros.policy.diffusion import DiffusionPolicy

    policy = DiffusionPolicy(tiny_config(relative_action_dims=7))
    g = torch.Generator().manual_seed(0)
    state = torch.rand(5, 2, 8, generator=g) * 2
    action = state[:, -1:, :].repeat(1, 8, 1) + 0.1 * torch.randn(5, 8, 8, generator=g)
    rel = policy.to_model_actions(action, state)
    assert torch.allclose(rel[..., :7], action[..., :7] - state[:, -1:, :7])
    assert torch.equal(rel[..., 7], action[..., 7])  # the gripper stays absolute
    assert torch.allclose(policy.from_model_actions(rel, state), action, atol=1e-6)
    policy.fit_normalizers(state.reshape(-1, 8).numpy(), state.numpy(), action.numpy())
    # the normaliser spans the offsets (~±0.3), not the absolute joint values (0..2)
    assert float((policy.action_norm.high - policy.action_norm.low)[:7].max()) < 1.0
    with pytest.raises(Exception, match="relative_action_dims"):
        tiny_config(relative_action_dims=9)
    # predict() returns absolute targets: a state shifted by +1 rad shifts the relative dims' base by +1 rad
    image = torch.rand(1, 2, 3, 32, 32, generator=g)
    out = policy.predict(image, state[:1], noise=torch.zeros(1, 8, 8))
    base = policy.action_norm.unnormalize(policy.sample(policy.encode_obs(image, state[:1]), noise=torch.zeros(1, 8, 8)))
    assert torch.allclose(out[..., :7], base[..., :7] + state[:1, -1:, :7], atol=1e-5)


def test_state_history_off_hides_older_joint_states():
    from bac_ros.policy.diffusion import DiffusionPolicy

    g = torch.Generator().manual_seed(1)
    image = torch.rand(1, 2, 3, 32, 32, generator=g)
    state = torch.rand(1, 2, 8, generator=g)
    moved = state.clone()
    moved[:, 0] += 0.5  # only the older step's joint state differs: a velocity the policy could copy
    for history in (True, False):
        torch.manual_seed(0)
        policy = DiffusionPolicy(tiny_config(state_history=history)).eval()
        a, b = policy.encode_obs(image, state), policy.encode_obs(image, moved)
        assert torch.equal(a[:, 1], b[:, 1])  # the newest step is the same either way
        assert torch.equal(a[:, 0], b[:, 0]) != history
    with torch.no_grad():  # the newest state still conditions the policy
        assert not torch.equal(policy.encode_obs(image, state), policy.encode_obs(image, state + 0.5))


def test_fixed_noise_makes_inference_a_function_of_the_observation(tiny_policy, tiny_cfg):
    from bac_ros.robot.streaming import ObservationWindow
    from bac_ros.robot.model import Q_HOME
    from bac_ros.sim.evaluate import _infer

    hist = ObservationWindow(tiny_cfg.n_obs_steps)
    size = tiny_cfg.encoder.image_shape[1]
    hist.push(1.0, np.random.default_rng(0).integers(0, 255, (size, size, 3), dtype=np.uint8),
              np.r_[Q_HOME, 0.08].astype(np.float32))
    from bac_ros.policy.runner import PolicyRunner

    fixed_runner = PolicyRunner(tiny_policy, None, seed=7, fixed_noise=True)
    fixed = [_infer(fixed_runner, hist)[0] for _ in range(2)]
    runner = PolicyRunner(tiny_policy, None, seed=0)
    fresh = [_infer(runner, hist)[0] for _ in range(2)]
    np.testing.assert_array_equal(fixed[0], fixed[1])
    assert np.abs(fresh[0] - fresh[1]).max() > 1e-4  # fresh noise: another sample of the same distribution
    runner.reset(0)
    np.testing.assert_array_equal(_infer(runner, hist)[0], fresh[0])  # a reset starts the same noise again
