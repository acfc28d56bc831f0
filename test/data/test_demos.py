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


def test_rows_carry_their_source_and_windows_start_only_at_training_rows(tmp_path):
    from bac_ros.data.episodes import SOURCES

    rng = np.random.default_rng(1)
    w = DemoWriter(tmp_path / "c.zarr", (8, 8, 3), dt=0.033)
    images, states, actions, times = _fake_episode(6, rng)
    source = np.array([1, 1, 2, 2, 2, 2], np.uint8)
    train = source == 2
    w.add_episode(5, True, images, states, actions, times, source, train, train)
    w.add_episode(6, True, *_fake_episode(3, rng))  # an expert's: every row trains
    with pytest.raises(ValueError, match="training row"):
        w.add_episode(7, True, images, states, actions, times, source, train, np.zeros(6, bool))
    # a failed episode: its correction is kept (a person's labels, DAgger), its policy rows are not
    w.add_episode(8, False, images, states, actions, times, source, train, train)
    w.add_episode(9, False, images, states, actions, times, source, train, np.ones(6, bool))
    d = Demos(tmp_path / "c.zarr")
    assert d.seeds == [5, 6, 8] and d.num_episodes == 3 and d.total_episodes == 4
    np.testing.assert_array_equal(d.source, np.r_[source, [SOURCES.index("expert")] * 3, source])
    np.testing.assert_array_equal(d.intervention, np.r_[train, [False] * 3, train])
    s = WindowSampler(d, horizon=3, n_obs_steps=2)
    assert len(s) == 4 + 3 + 4
    img, st, act = s.batch(np.array([0]))  # the first training row: its history is the policy's row before it
    np.testing.assert_array_equal(img[0, 0], images[1])
    np.testing.assert_allclose(act[0, 0], actions[1].astype(np.float32))


def test_a_format_1_data_set_still_reads(tmp_path):
    import zarr

    rng = np.random.default_rng(2)
    DemoWriter(tmp_path / "old.zarr", (8, 8, 3), dt=0.033).add_episode(1, True, *_fake_episode(4, rng))
    root = zarr.open_group(str(tmp_path / "old.zarr"), mode="r+")
    for name in ("source", "intervention", "train"):
        del root["data"][name]
    root.attrs["format"] = "bac-grasp-demos/1"
    d = Demos(tmp_path / "old.zarr")
    assert len(WindowSampler(d, 4, 1)) == 4 and not d.intervention.any()


def test_training_refuses_data_of_another_rate_or_image_size(tmp_path):
    from bac_ros.commands.train import check_data
    from support import tiny_config

    rng = np.random.default_rng(3)
    cfg = tiny_config(action_dt=0.1)  # 32 x 32 images
    w = DemoWriter(tmp_path / "a.zarr", (32, 32, 3), dt=1 / 30)
    w.add_episode(1, True, rng.integers(0, 255, (3, 32, 32, 3), dtype=np.uint8), *_fake_episode(3, rng)[1:])
    with pytest.raises(SystemExit, match="0.033333 s apart.*0.100000 s"):
        check_data(Demos(tmp_path / "a.zarr"), cfg, "a.zarr")
    check_data(Demos(tmp_path / "a.zarr"), tiny_config(action_dt=1 / 30), "a.zarr")
    w = DemoWriter(tmp_path / "b.zarr", (8, 8, 3), dt=0.1)
    w.add_episode(1, True, *_fake_episode(3, rng))
    with pytest.raises(SystemExit, match="8x8 px.*32x32"):
        check_data(Demos(tmp_path / "b.zarr"), cfg, "b.zarr")
