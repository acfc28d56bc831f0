"""Demonstrations on disk (zarr) and the training windows."""
import numpy as np
import pytest

from bac_ros.data.demos import DemoWriter, Demos, WindowSampler


def _fake_episode(n, rng):
    return (rng.integers(0, 255, (n, 8, 8, 3), dtype=np.uint8), rng.normal(size=(n, 8)),
            rng.normal(size=(n, 8)), np.arange(n) * 0.033)


def test_dataset_round_trip_and_windows(tmp_path):
    rng = np.random.default_rng(0)
    w = DemoWriter(tmp_path / "d.zarr", (8, 8, 3), dt=0.033)
    eps = [_fake_episode(5, rng), _fake_episode(3, rng), _fake_episode(4, rng)]
    for i, (e, ok) in enumerate(zip(eps, [True, False, True])):
        w.add_episode(10 + i, ok, *e)
    with pytest.raises(ValueError):
        w.add_episode(99, True, eps[0][0], eps[0][1][:2], eps[0][2], eps[0][3])
    d = Demos(tmp_path / "d.zarr")
    assert d.num_episodes == 2 and d.total_episodes == 3 and d.seeds == [10, 12] and len(d) == 9
    np.testing.assert_array_equal(d.image[:5], eps[0][0])
    np.testing.assert_allclose(d.action[5:], eps[2][2].astype(np.float32))
    s = WindowSampler(d, horizon=4, n_obs_steps=2)
    assert len(s) == 9
    img, st, act = s.batch(np.array([0, 4, 5]))
    # first step of an episode: the observation before it is padded with itself
    np.testing.assert_array_equal(img[0, 0], img[0, 1])
    np.testing.assert_allclose(act[0, 0], act[0, 1])
    # last step of episode 0: actions padded with its last action, never the next episode's
    np.testing.assert_allclose(act[1, 1:], np.repeat(d.action[4][None], 3, 0))
    np.testing.assert_allclose(st[2, 1], d.state[5])
    all_ = Demos(tmp_path / "d.zarr", successful_only=False)
    assert all_.num_episodes == 3 and len(all_) == 12
    # several data sets: episodes appended in order, episode ends offset
    with pytest.raises(FileExistsError, match="exists"):
        DemoWriter(tmp_path / "d.zarr", (8, 8, 3), dt=0.033)
    w2 = DemoWriter(tmp_path / "e.zarr", (8, 8, 3), dt=0.033)
    w2.add_episode(20, True, *_fake_episode(6, rng))
    both = Demos(f"{tmp_path / 'd.zarr'},{tmp_path / 'e.zarr'}")
    assert both.seeds == [10, 12, 20] and both.episode_ends.tolist() == [5, 9, 15] and len(both) == 15
    np.testing.assert_array_equal(both.image[:9], d.image)
    DemoWriter(tmp_path / "f.zarr", (8, 8, 3), dt=0.1).add_episode(30, True, *_fake_episode(2, rng))
    with pytest.raises(ValueError, match="different dt"):
        Demos([tmp_path / "d.zarr", tmp_path / "f.zarr"])
