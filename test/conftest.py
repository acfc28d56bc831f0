import pytest
import torch

from bac_ros.core.config import PolicyConfig
from bac_ros.core.policy import DiffusionPolicy, synthetic_observations

TINY = dict(name="tiny", n_layer=2, n_head=2, n_emb=32, horizon=8, n_obs_steps=2, n_action_steps=4,
            action_dim=8, sampler=dict(type="ddim", num_train_timesteps=50, num_inference_steps=8),
            encoder=dict(image_shape=[3, 32, 32], channels=[8, 16], groups=4, image_feature_dim=16, state_dim=8))


def tiny_config(**over) -> PolicyConfig:
    d = {**TINY, **over}
    return PolicyConfig.from_dict(d)


@pytest.fixture
def tiny_cfg():
    return tiny_config()


@pytest.fixture
def tiny_policy(tiny_cfg):
    torch.set_num_threads(1)
    return DiffusionPolicy.build(tiny_cfg, seed=0)


@pytest.fixture
def tiny_obs(tiny_cfg):
    return synthetic_observations(tiny_cfg, 6, seed=3)


# Rows (fault, outcome, seconds) the fault-injection suite (test_faults.py) leaves for the closing table.
FAULT_TABLE: list[tuple[str, str, float]] = []


def pytest_terminal_summary(terminalreporter):
    if not FAULT_TABLE:
        return
    tr = terminalreporter
    tr.section("fault injection: fault -> outcome")
    width = max(len(f) for f, _, _ in FAULT_TABLE)
    for fault, outcome, seconds in FAULT_TABLE:
        tr.write_line(f"{fault:<{width}}  {seconds:5.1f} s  {outcome}")
