"""Helpers the tests share (importable as `support`: pytest.ini puts test/ on the path)."""
from bac_ros.core.config import PolicyConfig

TINY = dict(name="tiny", n_layer=2, n_head=2, n_emb=32, horizon=8, n_obs_steps=2, n_action_steps=4,
            action_dim=8, sampler=dict(type="ddim", num_train_timesteps=50, num_inference_steps=8),
            encoder=dict(image_shape=[3, 32, 32], channels=[8, 16], groups=4, image_feature_dim=16, state_dim=8))


def tiny_config(**over) -> PolicyConfig:
    return PolicyConfig.from_dict({**TINY, **over})


# Rows (fault, outcome, seconds) the fault-injection suite (nodes/test_faults.py) leaves for the closing table.
FAULT_TABLE: list[tuple[str, str, float]] = []
