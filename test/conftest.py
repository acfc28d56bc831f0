import pytest
import torch

from bac_ros.policy.diffusion import DiffusionPolicy, synthetic_observations
from support import FAULT_TABLE, tiny_config


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


def pytest_terminal_summary(terminalreporter):
    if not FAULT_TABLE:
        return
    tr = terminalreporter
    tr.section("fault injection: fault -> outcome")
    width = max(len(f) for f, _, _ in FAULT_TABLE)
    for fault, outcome, seconds in FAULT_TABLE:
        tr.write_line(f"{fault:<{width}}  {seconds:5.1f} s  {outcome}")
