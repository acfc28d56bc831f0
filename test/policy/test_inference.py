"""The whole inference per schedule and its backends: eager is the caching runtime itself (bit for bit), the
compiled ONNX graph matches it, artifacts are cached by everything they depend on and rebuilt when any changes,
and the runner is the one entry point (noise, fixed noise, background builds)."""
import time

import numpy as np
import pytest
import torch

from bac_ros.policy.inference import build, draw_noise, example_inputs
from bac_ros.policy.schedule import Schedule


def _sparse(cfg, reuse="copy"):
    return Schedule.create(cfg, "acs-blockwise", {b: [0, 3, 5, 7] for b in cfg.block_ids}, num_updates=4,
                           reuse=reuse)


@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
def test_eager_is_the_caching_runtime_bit_for_bit(sampler):
    from bac_ros.policy.diffusion import DiffusionPolicy
    from support import tiny_config

    policy = DiffusionPolicy.build(tiny_config(sampler=dict(type=sampler, num_train_timesteps=50,
                                                            num_inference_steps=8)), seed=0)
    image, state, _ = example_inputs(policy, 2)
    for schedule in (None, _sparse(policy.cfg), _sparse(policy.cfg, "forecast")):
        noise = draw_noise(policy, torch.Generator().manual_seed(5))
        _, actions = build(policy, schedule)(image, state, noise)
        den = policy.denoiser(schedule)
        g = torch.Generator().manual_seed(5)
        first = torch.randn(1, policy.cfg.horizon, policy.cfg.action_dim, generator=g)  # the same draws, in order
        want = policy.future(policy.predict(image, state, den, first, g))
        torch.testing.assert_close(actions, want, rtol=0, atol=0)


@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
def test_held_points_come_out_as_given_and_a_free_prefix_changes_nothing(sampler):
    """Prefix-conditioned sampling (`Sampler.hold` at every step): the held points are the plan's first points
    (the last step lands on the clean level), the rest is denoised around them; nothing held is the unconditioned
    inference bit for bit, full precision and cached alike."""
    import dataclasses

    from bac_ros.policy.inference import Prefix
    from bac_ros.policy.diffusion import DiffusionPolicy
    from support import tiny_config

    policy = DiffusionPolicy.build(tiny_config(sampler=dict(type=sampler, num_train_timesteps=50,
                                                            num_inference_steps=8)), seed=0)
    cfg = policy.cfg
    image, state, noise = example_inputs(policy, 3)  # three points held
    held = noise.prefix.actions[0, cfg.n_obs_steps - 1:cfg.n_obs_steps + 2]
    for schedule in (None, _sparse(cfg)):
        run = build(policy, schedule)
        _, free = run(image, state, dataclasses.replace(noise, prefix=None))
        _, zero = run(image, state, dataclasses.replace(noise, prefix=Prefix.free(cfg)))
        torch.testing.assert_close(zero, free, rtol=0, atol=0)
        _, a = run(image, state, noise)
        torch.testing.assert_close(a[0, :3], held, rtol=0, atol=1e-5)
        assert float((a[0, 3:] - free[0, 3:]).abs().max()) > 1e-4  # the free points are denoised around them
    with pytest.raises(ValueError, match="prefix"):
        Prefix.future(cfg, torch.zeros(cfg.horizon, cfg.action_dim))  # more points than the future has


def _mixed(cfg, reuse="copy"):
    """Blocks at different steps: runs of reused blocks of every length, some repeated across steps."""
    rng = np.random.default_rng(4)
    blocks = {b: sorted({0, *rng.choice(np.arange(1, cfg.num_steps), 3, replace=False).tolist()})
              for b in cfg.block_ids}
    return Schedule.create(cfg, "acs-blockwise", blocks, num_updates=4, reuse=reuse)


@pytest.mark.parametrize("sampler", [dict(type="ddim"), dict(type="ddpm"), dict(type="ddim", prediction_type="sample")])
def test_the_lean_form_computes_what_eager_does(sampler):
    """`LeanInference` (the function the ONNX backend exports) against the eager runtime, full and cached (copy
    and forecast reuse), held and free: the same results up to float rounding."""
    import dataclasses

    from bac_ros.policy.diffusion import DiffusionPolicy
    from bac_ros.policy.inference import ScheduledInference
    from bac_ros.policy.lean import LeanInference
    from support import tiny_config

    policy = DiffusionPolicy.build(tiny_config(sampler=dict(sampler, num_train_timesteps=50,
                                                            num_inference_steps=8)), seed=0)
    cfg = policy.cfg
    image, state, noise = example_inputs(policy, 7)
    with torch.inference_mode():
        for schedule in (None, _sparse(cfg), _sparse(cfg, "forecast"), _mixed(cfg), _mixed(cfg, "forecast")):
            for n in (noise, dataclasses.replace(noise, prefix=None)):
                args = (image, state, *n.inputs(cfg))
                want, got = ScheduledInference(policy, schedule)(*args), LeanInference(policy, schedule)(*args)
                for g, w in zip(got, want):
                    assert g.shape == w.shape
                    torch.testing.assert_close(g, w, rtol=0, atol=2e-5)
                assert float(((got[1] - want[1]) ** 2).mean()) < 1e-12


@pytest.mark.slow
def test_onnx_matches_eager_and_is_cached_by_what_it_depends_on(tiny_policy, tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    monkeypatch.setenv("BAC_CACHE_DIR", str(tmp_path))
    schedule = _mixed(tiny_policy.cfg)
    onnx = build(tiny_policy, schedule, "onnx")
    assert onnx.built_s is not None and onnx.path.is_file()  # built once ...
    image, state, noise = example_inputs(tiny_policy, 9)
    x, a = onnx(image, state, noise)
    x0, a0 = build(tiny_policy, schedule)(image, state, noise)
    assert float(((a - a0) ** 2).mean()) < 1e-10 and float(((x - x0) ** 2).mean()) < 1e-10
    forecast = build(tiny_policy, _mixed(tiny_policy.cfg, "forecast"), "onnx")
    want = build(tiny_policy, _mixed(tiny_policy.cfg, "forecast"))(image, state, noise)[1]
    assert float(((forecast(image, state, noise)[1] - want) ** 2).mean()) < 1e-10
    again = build(tiny_policy, schedule, "onnx")
    assert again.built_s is None and again.path == onnx.path  # ... then taken from the cache
    from bac_ros.policy.inference import artifact_key

    other = Schedule.create(tiny_policy.cfg, "acs-blockwise", {b: [0, 4, 7] for b in tiny_policy.cfg.block_ids},
                            num_updates=3)
    key = artifact_key(tiny_policy, schedule, "onnx", "cpu")
    assert artifact_key(tiny_policy, other, "onnx", "cpu") != key  # another schedule, backend, device: another
    assert artifact_key(tiny_policy, schedule, "cuda-graph", "cpu") != key
    assert artifact_key(tiny_policy, schedule, "onnx", "cuda:0") != key
    with torch.no_grad():
        tiny_policy.model.head.bias.add_(0.01)  # other weights: never the stale artifact
    changed = build(tiny_policy, schedule, "onnx")
    assert changed.path != onnx.path and changed.built_s is not None
    assert float(((changed(image, state, noise)[1] - a) ** 2).mean()) > 0


def test_a_backend_in_the_cache_is_loaded_at_once_not_built_behind_eager(tiny_policy, tmp_path, monkeypatch):
    """policy_node's runner (background=True): with nothing cached it starts on eager and builds behind it; once
    the ONNX file is cached the next start runs it from the first inference (a load takes seconds)."""
    pytest.importorskip("onnxruntime")
    from bac_ros.policy.inference import onnx_artifact
    from bac_ros.policy.runner import PolicyRunner

    monkeypatch.setenv("BAC_CACHE_DIR", str(tmp_path))
    schedule = _sparse(tiny_policy.cfg)
    built = []
    first = PolicyRunner(tiny_policy, schedule, "onnx", background=True, on_built=built.append)
    assert first.backend == "eager" and first.building
    deadline = time.monotonic() + 120
    while first.building and time.monotonic() < deadline:
        time.sleep(0.05)
    assert built == [None] and first.backend == "onnx" and onnx_artifact(tiny_policy, schedule).is_file()
    again = PolicyRunner(tiny_policy, schedule, "onnx", background=True, on_built=built.append)
    assert again.backend == "onnx" and not again.building and built == [None]
    onnx_artifact(tiny_policy, schedule).write_bytes(b"not onnx")  # an unreadable cached file: eager goes on,
    broken = PolicyRunner(tiny_policy, schedule, "onnx", background=True, on_built=built.append)
    assert broken.backend == "eager"
    while broken.building and time.monotonic() < deadline:
        time.sleep(0.05)
    assert broken.backend == "eager" and len(built) == 2 and built[1]  # and the build's error is reported


def test_the_runner_draws_noise_as_the_sampler_does_and_builds_in_the_background(tiny_policy, tiny_obs):
    from bac_ros.policy.runner import PolicyRunner

    img = (tiny_obs[0][0].permute(0, 2, 3, 1).numpy() * 255).astype(np.uint8)
    st = tiny_obs[1][0].numpy()
    runner = PolicyRunner(tiny_policy, _sparse(tiny_policy.cfg), seed=4)
    a = runner.select_action(img, st)
    assert a.shape == (tiny_policy.cfg.horizon - tiny_policy.cfg.n_obs_steps + 1, 8)
    runner.reset(4)
    np.testing.assert_array_equal(runner.select_action(img, st), a)
    with pytest.raises(ValueError, match="state"):
        runner.select_action(img, np.full_like(st, np.nan))
    runner.reset(4)
    given = a[:2] + 0.1
    held = runner.select_action(img, st, given)  # the plan starts with the points given
    np.testing.assert_allclose(held[:2], given, atol=1e-5)
    with pytest.raises(ValueError, match="prefix"):
        runner.select_action(img, st, np.full((2, 8), np.nan))
    with pytest.raises(ValueError, match="prefix"):
        runner.select_action(img, st, np.zeros((2, 5)))
    done = []
    bg = PolicyRunner(tiny_policy, _sparse(tiny_policy.cfg), "cuda-graph", background=True, on_built=done.append)
    assert bg.backend == "eager"
    np.testing.assert_array_equal(bg.select_action(img, st), PolicyRunner(tiny_policy, _sparse(tiny_policy.cfg),
                                                                          seed=0).select_action(img, st))
    import time

    deadline = time.monotonic() + 30
    while bg.building and time.monotonic() < deadline:
        time.sleep(0.05)
    assert done and "CUDA" in done[0] and bg.backend == "eager"  # no GPU here: said once, eager goes on
    with pytest.raises(ValueError, match="backend"):
        build(tiny_policy, None, "tensorrt")


@pytest.mark.cuda
@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
def test_the_cuda_graph_replays_the_eager_inference(sampler):
    """On a GPU: the captured graph gives eager's actions (the same kernels), replay after replay, for new inputs
    copied into its static buffers; the runner plays it."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    from bac_ros.policy.diffusion import DiffusionPolicy
    from bac_ros.policy.runner import PolicyRunner
    from support import tiny_config

    policy = DiffusionPolicy.build(tiny_config(sampler=dict(type=sampler, num_train_timesteps=50,
                                                            num_inference_steps=8)), seed=0).to("cuda")
    schedule = _sparse(policy.cfg)
    graph, eager = build(policy, schedule, "cuda-graph"), build(policy, schedule)
    for seed in (1, 2, 3):
        image, state, noise = example_inputs(policy, seed)
        (_, a), (_, a0) = graph(image, state, noise), eager(image, state, noise)
        torch.testing.assert_close(a, a0, rtol=1e-5, atol=1e-6)
    img = np.zeros((policy.cfg.n_obs_steps, 32, 32, 3), np.uint8)
    st = np.zeros((policy.cfg.n_obs_steps, 8), np.float32)
    r = PolicyRunner(policy, schedule, "cuda-graph")
    assert r.backend == "cuda-graph" and np.all(np.isfinite(r.select_action(img, st)))
