import itertools

import numpy as np
import pytest
import torch

from bac_ros.policy import calibrate, flops
from bac_ros.policy.caching import CachedDenoiser, TeaCacheDenoiser
from bac_ros.policy.diffusion import DiffusionPolicy
from bac_ros.policy.schedule import Schedule

from support import tiny_config


def _predict(policy, img, st, den, seed=0):
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(img.shape[0], policy.cfg.horizon, policy.cfg.action_dim, generator=g)
    return policy.predict(img, st, den, noise, torch.Generator().manual_seed(seed + 1))


def _random_schedule(cfg, seed):
    rng = np.random.default_rng(seed)
    k = cfg.num_steps
    blocks = {b: sorted({0, *rng.choice(np.arange(1, k), size=int(rng.integers(0, k)), replace=False).tolist()})
              for b in cfg.block_ids}
    return Schedule.create(cfg, "acs-blockwise", blocks, num_updates=None)


@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
@pytest.mark.parametrize("hoist", [True, False])
def test_full_schedule_is_bit_exact(sampler, hoist):
    cfg = tiny_config(sampler=dict(type=sampler, num_train_timesteps=50, num_inference_steps=8))
    policy = DiffusionPolicy.build(cfg, seed=1)
    from bac_ros.policy.diffusion import synthetic_observations
    img, st = synthetic_observations(cfg, 3, seed=2)
    for i in range(3):  # batch 1, as deployed
        plain = _predict(policy, img[i:i + 1], st[i:i + 1], policy.denoiser(None), seed=i)
        cached = _predict(policy, img[i:i + 1], st[i:i + 1], policy.denoiser(Schedule.full(cfg), hoist=hoist), seed=i)
        assert torch.equal(plain, cached)


def test_forecast_with_nothing_reused_is_the_plain_model_bit_for_bit(tiny_policy, tiny_obs):
    import dataclasses

    img, st = tiny_obs[0][:1], tiny_obs[1][:1]
    plain = _predict(tiny_policy, img, st, tiny_policy.denoiser(None))
    full = dataclasses.replace(Schedule.full(tiny_policy.cfg), reuse="forecast")
    assert torch.equal(plain, _predict(tiny_policy, img, st, tiny_policy.denoiser(full)))
    assert full.label == "full+forecast(S=8)"


def test_full_schedule_batched_matches(tiny_policy, tiny_obs):
    img, st = tiny_obs
    plain = _predict(tiny_policy, img, st, tiny_policy.denoiser(None))
    cached = _predict(tiny_policy, img, st, tiny_policy.denoiser(Schedule.full(tiny_policy.cfg)))
    torch.testing.assert_close(plain, cached, rtol=1e-5, atol=1e-5)


def _reference_cached(policy, img, st, schedule, seed=0):
    """Straightforward re-implementation of reuse: dict cache, nothing hoisted; forecast: the last two
    computed outputs extrapolated linearly in the step index."""
    m, cfg = policy.model, policy.cfg
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(img.shape[0], cfg.horizon, cfg.action_dim, generator=g)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.inference_mode():
        cond = policy.encode_obs(img, st)
        store = {}
        for k, t in enumerate(policy.scheduler.timesteps):
            tt, ot = m.time_token(t, x.shape[0]), m.obs_tokens(cond)
            h = m.embed_sample(x)
            for li, layer in enumerate(m.layers):
                for kind, fn in (("sa", lambda h: layer.sa(h, m.self_mask)),
                                 ("ca", lambda h: layer.ca(h, tt, ot, m.memory_mask)),
                                 ("ffn", lambda h: layer.ffn(h))):
                    b = f"L{li}.{kind}"
                    if k in schedule.blocks[b]:
                        store[b] = store.get(b, [])[-1:] + [(k, fn(h))]
                    (k1, y1) = store[b][-1]
                    if schedule.reuse == "forecast" and len(store[b]) == 2 and k != k1:
                        (k0, y0) = store[b][0]
                        h = h + (y1 + (y1 - y0) / (k1 - k0) * (k - k1))
                    else:
                        h = h + y1
            x = policy.scheduler.step(m.output(h), t, x, generator=gen).prev_sample
        return policy.action_norm.unnormalize(x)


@pytest.mark.parametrize("reuse", ["copy", "forecast"])
@pytest.mark.parametrize("seed", range(4))
def test_reuse_matches_reference(tiny_policy, tiny_obs, seed, reuse):
    import dataclasses

    sched = dataclasses.replace(_random_schedule(tiny_policy.cfg, seed), reuse=reuse)
    img, st = tiny_obs[0][:1], tiny_obs[1][:1]
    ref = _reference_cached(tiny_policy, img, st, sched, seed)
    got = _predict(tiny_policy, img, st, tiny_policy.denoiser(sched), seed)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-6)
    full = _predict(tiny_policy, img, st, tiny_policy.denoiser(None), seed)
    assert not torch.allclose(got, full)  # reuse really changed the result


def test_blocks_compute_exactly_at_their_steps_and_reuse_last_stored(tiny_policy, tiny_obs):
    cfg = tiny_policy.cfg
    sched = _random_schedule(cfg, 7)
    ids = cfg.block_ids
    computed = {b: [] for b in ids}
    stored = {}

    def rec(k, j, out):
        computed[ids[j]].append(k)
        stored[(ids[j], k)] = out.clone()

    den = CachedDenoiser(tiny_policy.model, sched, tiny_policy.scheduler.timesteps, recorder=rec)
    # Wrap the residual adds: capture what is added for each block at every step.
    added = {}
    img, st = tiny_obs[0][:1], tiny_obs[1][:1]
    orig_step = den.step

    def step(k, sample, t):
        out = orig_step(k, sample, t)
        for j, b in enumerate(ids):
            added[(b, k)] = den._cache[j].clone()
        return out

    den.step = step
    _predict(tiny_policy, img, st, den)
    for b in ids:
        assert computed[b] == sched.blocks[b]
        for k in range(cfg.num_steps):
            last = max(s for s in sched.blocks[b] if s <= k)
            assert torch.equal(added[(b, k)], stored[(b, last)]), (b, k, last)
    assert den.updates == sum(len(v) for v in sched.blocks.values())


def test_denoiser_rejects_wrong_schedule(tiny_policy):
    other = tiny_config(n_layer=3)
    s = Schedule.full(other)
    with pytest.raises(ValueError, match="n_layer"):
        tiny_policy.denoiser(s)


def test_teacache_extremes(tiny_policy, tiny_obs):
    img, st = tiny_obs[0][:1], tiny_obs[1][:1]
    k = tiny_policy.cfg.num_steps
    ts = tiny_policy.scheduler.timesteps
    every = TeaCacheDenoiser(tiny_policy.model, 0.0, ts)
    out = _predict(tiny_policy, img, st, every)
    assert every.computed_steps == list(range(k))
    torch.testing.assert_close(out, _predict(tiny_policy, img, st, tiny_policy.denoiser(None)), rtol=0, atol=1e-6)
    lazy = TeaCacheDenoiser(tiny_policy.model, 1e9, ts)
    _predict(tiny_policy, img, st, lazy)
    assert lazy.computed_steps == [0, k - 1]


def test_calibration_statistics(tiny_policy, tiny_obs):
    img, st = tiny_obs
    stats = calibrate.collect(tiny_policy, img, st, batch_size=4)
    k = tiny_policy.cfg.num_steps
    assert stats.num_observations == 6 and stats.block_ids == tiny_policy.cfg.block_ids
    for b in stats.block_ids:
        sim = stats.similarity[b]
        assert sim.shape == (k, k)
        np.testing.assert_allclose(np.diag(sim), 1.0, atol=1e-6)
        np.testing.assert_allclose(sim, sim.T, atol=1e-6)
        assert stats.l1_error[b] > 0
        l1 = stats.matrix(b, "l1")  # 1 - relative error of standing in step i's output for step t's
        assert l1.shape == (k, k) and np.all(l1 <= 1.0 + 1e-9)
        np.testing.assert_allclose(np.diag(l1), 1.0, atol=1e-9)
    with pytest.raises(ValueError, match="similarity"):
        stats.matrix(stats.block_ids[0], "l2")
    assert stats.gram is None  # kept only when asked (the forecast-aware ACS)
    with pytest.raises(ValueError, match="Gram"):
        calibrate.make_schedule(tiny_policy, "bac", 3, stats, reuse="forecast")


def test_l1_similarity_sees_a_change_of_size_that_cosine_misses():
    """A block whose output keeps its direction but grows 5x over the steps: cosine finds nothing to update
    for; the L1 similarity makes the program spread the updates over the growth."""
    from bac_ros.policy import acs

    k = 10
    sizes = np.linspace(1.0, 5.0, k)
    cos = np.ones((k, k))
    l1 = 1.0 - np.abs(sizes[:, None] - sizes[None, :]) / sizes[None, :]
    stats = calibrate.CalibrationStats(["L0.sa"], {"L0.sa": cos}, {"L0.sa": 1.0}, 1, {"L0.sa": l1})
    by_cos = acs.optimal_update_steps(stats.matrix("L0.sa", "cosine"), 3)
    by_l1 = acs.optimal_update_steps(stats.matrix("L0.sa", "l1"), 3)
    reuse_error = lambda steps: sum(1 - l1[max(c for c in steps if c <= t), t] for t in range(k))  # noqa: E731
    assert reuse_error(by_l1) < reuse_error(by_cos)
    assert max(np.diff(by_l1 + [k])) <= 4  # spread over the growth, no segment reused for half the steps


def test_make_schedules(tiny_policy, tiny_obs):
    img, st = tiny_obs
    stats = calibrate.collect(tiny_policy, img, st)
    cfg = tiny_policy.cfg
    blockwise = calibrate.make_schedule(tiny_policy, "acs-blockwise", 3, stats)
    bac = calibrate.make_schedule(tiny_policy, "bac", 3, stats, top_n=2)
    assert all(len(v) == 3 for v in blockwise.blocks.values())
    assert bac.bua["blocks"] == sorted(stats.l1_error, key=lambda b: -stats.l1_error[b])[:2]
    for b in cfg.block_ids:
        assert set(blockwise.blocks[b]) <= set(bac.blocks[b])
    unified = calibrate.make_schedule(tiny_policy, "acs-unified", 3, stats)
    assert len({tuple(v) for v in unified.blocks.values()}) == 1
    last = calibrate.make_schedule(tiny_policy, "uniform", 3, None, force_last=True)
    assert all(v[-1] == cfg.num_steps - 1 and len(v) == 3 for v in last.blocks.values())
    tc = calibrate.make_schedule(tiny_policy, "teacache", 4, None, image=img[:3], state=st[:3])
    assert 2 <= tc.teacache["mean_updates"] <= 4


def test_forecast_schedules_are_chosen_for_the_forecast(tiny_policy, tiny_obs):
    """`reuse: forecast` per-block schedules come from the forecast-scored ACS on the observations' Gram
    matrices (one per observation and block), and say so in their calibration."""
    img, st = tiny_obs
    stats = calibrate.collect(tiny_policy, img, st, batch_size=4, gram=True)
    cfg = tiny_policy.cfg
    k = cfg.num_steps
    for b in cfg.block_ids:
        g = stats.gram[b]
        assert g.shape == (6, k, k)
        # its diagonal-normalised mean is the cosine similarity the copy-scored ACS uses
        d = np.sqrt(np.einsum("nii->ni", g))
        np.testing.assert_allclose((g / d[:, :, None] / d[:, None, :]).mean(0), stats.similarity[b], atol=1e-6)
    fc = calibrate.make_schedule(tiny_policy, "acs-blockwise", 3, stats, reuse="forecast")
    assert fc.reuse == "forecast" and fc.calibration["objective"] == "forecast"

    def score(steps, sim, forecast):  # what each step uses: a copy of the first update, then forecasts
        bounds = [*steps, k]
        total = sum(sim[steps[0], t] for t in range(steps[0], bounds[1]))
        for i in range(1, len(steps)):
            total += sum(forecast[steps[i - 1], steps[i], t] for t in range(steps[i], bounds[i + 1]))
        return total

    for b in cfg.block_ids:  # every choice of 3 steps from step 0, scored by hand: the schedule has the best
        sim, forecast = stats.similarity[b], stats.forecast_matrix(b)
        best = max(([0, *rest] for rest in itertools.combinations(range(1, k), 2)),
                   key=lambda steps: score(steps, sim, forecast))
        assert fc.blocks[b] == best
    assert calibrate.make_schedule(tiny_policy, "bac", 3, stats).calibration["objective"] == "copy"
    with pytest.raises(ValueError, match="cosine"):
        calibrate.make_schedule(tiny_policy, "bac", 3, stats, reuse="forecast", similarity="l1")


def test_flops_counts(tiny_policy):
    cfg = tiny_policy.cfg
    per = flops.block_flops(cfg)
    t, e = cfg.horizon, cfg.n_emb
    assert per["ffn"] == 2 * t * e * 4 * e * 2
    k, n = cfg.num_steps, cfg.n_layer
    full = {kind: k * n for kind in ("sa", "ca", "ffn")}
    plain = flops.inference_flops(cfg, full, 0.0, hoisted=False)
    hoisted = flops.inference_flops(cfg, full, 0.0, hoisted=True)
    cached = flops.inference_flops(cfg, {kind: 2 * n for kind in ("sa", "ca", "ffn")}, 0.0)
    assert plain > hoisted > cached
    enc = flops.encoder_flops(tiny_policy.obs_encoder.image, cfg.encoder.image_shape, 1)
    assert enc > 2 * 8 * 16 * 16 * 27  # at least the stem conv
