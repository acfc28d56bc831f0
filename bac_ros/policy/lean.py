"""`ScheduledInference`'s function written for an exported graph: the same inputs, outputs and arithmetic up to
float rounding, in fewer and cheaper graph nodes.

In ONNX Runtime a node costs about a microsecond before it computes anything, and at batch 1 the policy's
tensors are small (16 x 192), so an inference's fixed work (what every denoising step pays whichever blocks it
recomputes) is mostly node count: a cached schedule skips blocks but not that. The eager runtime
(`CachedDenoiser`) stays the reference; this form, exported once per schedule, is checked against it
(`inference.VERIFY_MSE`). What it does differently (docs/speed.md, "The compiled graph"):
- batch 1 as 2-D (horizon, width) tensors: a linear layer is one Gemm, not reshape, Gemm, reshape;
- attention written out with the 1/sqrt(head dim) scale folded into the query weights (no SDPA decomposition
  with its shape arithmetic), no mask where it masks nothing; the cross-attention keys come transposed from the
  per-inference hoist;
- the reused blocks' outputs added as sums of runs: a run of consecutive reused blocks that none of them has
  recomputed since an earlier step adds the sum made then (one node) instead of one node per block;
- the held points (`Sampler.hold`) as one select from targets made for every step at once.
"""
from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from .caching import reused, time_tables
from .model import _linear, _norm
from .schedule import Schedule


class LeanInference(torch.nn.Module):
    """(image, state, noise, step noise, prefix, prefix mask) -> (sample, future actions), as
    `inference.ScheduledInference` (batch 1 only; the prefix mask read as 0/1)."""

    def __init__(self, policy, schedule: Schedule | None):
        super().__init__()
        cfg, m = policy.cfg, policy.model
        self.policy = policy
        self.schedule = schedule if schedule is not None else Schedule.full(cfg)
        if self.schedule.is_dynamic:
            raise ValueError("a dynamic schedule (teacache) has no static graph: run it eager")
        self.schedule.validate(cfg)
        self.plan = [tuple(bool(u) for u in row) for row in self.schedule.update_mask(cfg.block_ids)]
        self.forecast = self.schedule.reuse == "forecast"
        self.n_head, e = cfg.n_head, cfg.n_emb
        self.d_head = e // cfg.n_head
        scale = 1.0 / math.sqrt(self.d_head)
        with torch.no_grad():
            _, time_kv = time_tables(m, policy.sampler.timesteps)
            # per step and layer the time row of the cross-attention keys (n_head, d, 1) and values (n_head, 1, d)
            self.time_k = [[k[0].transpose(1, 2).contiguous() for k, _ in row] for row in time_kv]
            self.time_v = [[v[0].contiguous() for _, v in row] for row in time_kv]
            self.embed_bias = (m.input_emb.bias + m.pos_emb[0]).contiguous()  # (horizon, width)
            self.sa_w, self.sa_b, self.ca_w, self.ca_b = [], [], [], []
            for layer in m.layers:
                w, b = layer.sa.qkv.weight.clone(), layer.sa.qkv.bias.clone()
                w[:e] *= scale
                b[:e] *= scale
                self.sa_w.append(w.t().contiguous())
                self.sa_b.append(b)
                self.ca_w.append((layer.ca.q.weight * scale).t().contiguous())
                self.ca_b.append(layer.ca.q.bias * scale)
            # additive masks (1, horizon, keys); none where nothing is masked (one observation step: the memory)
            self.self_mask, self.memory_mask = (mask[None] if mask is not None and bool((mask != 0).any()) else None
                                                for mask in (m.self_mask, m.memory_mask))
            # the held points' noise levels: the start's (index 0), then the one each step lands on
            a, b = zip(*(policy.sampler.hold_level(k) for k in range(-1, cfg.num_steps)))
            self.hold_a, self.hold_b = (torch.stack(c)[:, None, None] for c in (a, b))

    # ---- pieces ----------------------------------------------------------------------------------
    def _heads(self, x):  # (rows, n * d) -> (n, rows, d)
        return x.view(x.shape[0], -1, self.d_head).transpose(0, 1)

    def _merge(self, y):  # (n, rows, d) -> (rows, n * d)
        return y.transpose(0, 1).reshape(y.shape[1], -1)

    def _attend(self, q, k_t, v, mask):
        scores = torch.matmul(q, k_t)
        if mask is not None:
            scores = scores + mask
        return self._merge(torch.matmul(torch.softmax(scores, dim=-1), v))

    def _sa(self, li, x):
        a = self.policy.model.layers[li].sa
        qkv, n = self._heads(torch.addmm(self.sa_b[li], _norm(a.norm, x), self.sa_w[li])), self.n_head
        q, k, v = qkv[:n], qkv[n:2 * n], qkv[2 * n:]
        return _linear(a.proj, self._attend(q, k.transpose(1, 2), v, self.self_mask))

    def _ca(self, li, x, k, memory):
        c = self.policy.model.layers[li].ca
        q = self._heads(torch.addmm(self.ca_b[li], _norm(c.norm, x), self.ca_w[li]))
        k_t = torch.cat([self.time_k[k][li], memory[li][0]], dim=2)
        v = torch.cat([self.time_v[k][li], memory[li][1]], dim=1)
        return _linear(c.proj, self._attend(q, k_t, v, self.memory_mask))

    def _ffn(self, li, x):
        f = self.policy.model.layers[li].ffn
        return _linear(f.fc2, F.gelu(_linear(f.fc1, _norm(f.norm, x))))

    # ---- the inference ---------------------------------------------------------------------------
    def forward(self, image, state, noise, step_noise, prefix, prefix_mask):
        p, m = self.policy, self.policy.model
        obs = m.obs_tokens(p.encode_obs(image, state))
        # per layer the observation rows of the cross-attention keys, transposed (n, d, To), and values (n, To, d)
        memory = []
        for layer in m.layers:
            k, v = layer.ca.memory_kv(obs)
            memory.append((k[0].transpose(1, 2), v[0]))
        known = p.action_norm.normalize(p.to_model_actions(prefix, state))[0]
        targets = self.hold_a * known + self.hold_b * noise[0]  # (1 + K, horizon, action_dim)
        held = prefix_mask[0] > 0.5
        x = torch.where(held, targets[0], noise[0])
        n_blocks = len(self.plan[0])
        out: list = [None] * n_blocks
        when = [0] * n_blocks  # the step each block last computed at
        slope: list = [None] * n_blocks
        sums: dict = {}  # (blocks, the steps they last computed at) -> the sum of their outputs
        for k, plan in enumerate(self.plan):
            h = torch.addmm(self.embed_bias, x, m.input_emb.weight.t())
            run: list[int] = []
            for j in range(n_blocks + 1):
                if j < n_blocks and not plan[j]:
                    run.append(j)
                    continue
                if run:
                    h = h + self._run_sum(run, k, out, when, slope, sums)
                    run = []
                if j == n_blocks:
                    break
                li, kind = divmod(j, 3)
                y = self._sa(li, h) if kind == 0 else self._ca(li, h, k, memory) if kind == 1 else self._ffn(li, h)
                if self.forecast and out[j] is not None:
                    slope[j] = (y - out[j]) / (k - when[j])
                out[j], when[j] = y, k
                h = h + y
            eps = _linear(m.head, _norm(m.ln_f, h))
            x = torch.where(held, targets[k + 1], p.sampler.step(k, eps, x, noise=step_noise[k, 0]))
        x = x[None]
        return x, p.future(p.from_model_actions(p.action_norm.unnormalize(x), state))

    def _run_sum(self, run, k, out, when, slope, sums):
        """What the reused blocks `run` (consecutive) add at step k: their outputs' sum, made once for as long as
        none of them recomputes (copy reuse); forecast reuse extrapolates each to step k, anew at every step."""
        key = tuple((j, when[j]) for j in run)
        if self.forecast or key not in sums:
            total = reused(out[run[0]], slope[run[0]], when[run[0]], k)
            for j in run[1:]:
                total = total + reused(out[j], slope[j], when[j], k)
            if self.forecast:
                return total
            sums[key] = total
        return sums[key]
