"""Transformer Diffusion Policy (DP-T) denoiser with named residual branches.

Condition encoder: per-token MLP over [time token, observation tokens] (no cross-token layers), so the
observation rows of the memory are constant across one inference's denoising steps.
Decoder layer (pre-norm):  x += sa(x);  x += ca(x, memory);  x += ffn(x)
where each branch includes its LayerNorm and its output dropout: `sa`, `ca`, `ffn` return exactly the
residual-branch output that BAC caches.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from .config import PolicyConfig

def _additive(allowed: torch.Tensor) -> torch.Tensor:
    return torch.zeros(allowed.shape).masked_fill(~allowed, float("-inf"))


class SinusoidalTimeEmbedding(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        half = dim // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / max(half - 1, 1))
        self.register_buffer("freqs", freqs, persistent=False)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        arg = t.to(self.freqs.device).float()[:, None] * self.freqs[None, :]
        return torch.cat([arg.sin(), arg.cos()], dim=-1)


def _heads(x: torch.Tensor, n_head: int) -> torch.Tensor:
    b, s, e = x.shape
    return x.view(b, s, n_head, e // n_head).transpose(1, 2)


def _merge(x: torch.Tensor) -> torch.Tensor:
    b, h, s, d = x.shape
    return x.transpose(1, 2).reshape(b, s, h * d)


def _norm(m: nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
    # the module's own arithmetic without a module call (its Python overhead is a measurable share of a step)
    return F.layer_norm(x, m.normalized_shape, m.weight, m.bias, m.eps)


def _linear(m: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    return F.linear(x, m.weight, m.bias)


class SelfAttentionBranch(nn.Module):
    def __init__(self, n_emb: int, n_head: int, p_attn: float):
        super().__init__()
        self.n_head, self.p_attn = n_head, p_attn
        self.norm = nn.LayerNorm(n_emb)
        self.qkv = nn.Linear(n_emb, 3 * n_emb)
        self.proj = nn.Linear(n_emb, n_emb)
        self.drop = nn.Dropout(p_attn)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        q, k, v = _linear(self.qkv, _norm(self.norm, x)).chunk(3, dim=-1)
        y = F.scaled_dot_product_attention(_heads(q, self.n_head), _heads(k, self.n_head), _heads(v, self.n_head),
                                           attn_mask=mask, dropout_p=self.p_attn if self.training else 0.0)
        y = _linear(self.proj, _merge(y))
        return self.drop(y) if self.training else y  # dropout is the identity in eval: no call


class CrossAttentionBranch(nn.Module):
    """Queries from the action tokens, keys/values from the condition memory [time token, obs tokens].

    The two parts of the memory are projected separately (the same arithmetic as one projection, row by
    row), so a runtime can project the constant observation rows once per inference and only the time row
    per step, and still match this forward bit for bit."""

    def __init__(self, n_emb: int, n_head: int, p_attn: float):
        super().__init__()
        self.n_head, self.p_attn = n_head, p_attn
        self.norm = nn.LayerNorm(n_emb)
        self.q = nn.Linear(n_emb, n_emb)
        self.kv = nn.Linear(n_emb, 2 * n_emb)
        self.proj = nn.Linear(n_emb, n_emb)
        self.drop = nn.Dropout(p_attn)

    def memory_kv(self, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k, v = _linear(self.kv, memory).chunk(2, dim=-1)
        return _heads(k, self.n_head), _heads(v, self.n_head)

    def attend(self, x: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        q = _heads(_linear(self.q, _norm(self.norm, x)), self.n_head)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                           dropout_p=self.p_attn if self.training else 0.0)
        y = _linear(self.proj, _merge(y))
        return self.drop(y) if self.training else y

    def forward(self, x: torch.Tensor, time_tok: torch.Tensor, obs_tok: torch.Tensor,
                mask: torch.Tensor | None) -> torch.Tensor:
        (kt, vt), (ko, vo) = self.memory_kv(time_tok), self.memory_kv(obs_tok)
        return self.attend(x, torch.cat([kt, ko], dim=2), torch.cat([vt, vo], dim=2), mask)


class FeedForwardBranch(nn.Module):
    def __init__(self, n_emb: int, p_drop: float):
        super().__init__()
        self.norm = nn.LayerNorm(n_emb)
        self.fc1 = nn.Linear(n_emb, 4 * n_emb)
        self.fc2 = nn.Linear(4 * n_emb, n_emb)
        self.drop = nn.Dropout(p_drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = _linear(self.fc2, F.gelu(_linear(self.fc1, _norm(self.norm, x))))
        return self.drop(y) if self.training else y


class DecoderLayer(nn.Module):
    def __init__(self, cfg: PolicyConfig):
        super().__init__()
        self.sa = SelfAttentionBranch(cfg.n_emb, cfg.n_head, cfg.p_drop_attn)
        self.ca = CrossAttentionBranch(cfg.n_emb, cfg.n_head, cfg.p_drop_attn)
        self.ffn = FeedForwardBranch(cfg.n_emb, cfg.p_drop_attn)

    def forward(self, x, time_tok, obs_tok, self_mask, memory_mask):
        x = x + self.sa(x, self_mask)
        x = x + self.ca(x, time_tok, obs_tok, memory_mask)
        return x + self.ffn(x)


class TransformerForDiffusion(nn.Module):
    """eps/sample prediction for an action trajectory (B, horizon, action_dim), conditioned on the
    diffusion timestep and observation features (B, n_obs_steps, obs_dim)."""

    def __init__(self, cfg: PolicyConfig):
        super().__init__()
        self.cfg = cfg
        e, t, to = cfg.n_emb, cfg.horizon, cfg.n_obs_steps
        self.input_emb = nn.Linear(cfg.action_dim, e)
        self.pos_emb = nn.Parameter(torch.zeros(1, t, e))
        self.drop = nn.Dropout(cfg.p_drop_emb)
        self.time_emb = SinusoidalTimeEmbedding(e)
        self.cond_obs_emb = nn.Linear(cfg.encoder.feature_dim, e)
        self.cond_pos_emb = nn.Parameter(torch.zeros(1, 1 + to, e))
        self.cond_mlp = nn.Sequential(nn.Linear(e, 4 * e), nn.Mish(), nn.Linear(4 * e, e))
        self.layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(e)
        self.head = nn.Linear(e, cfg.action_dim)
        # additive masks (0 = may attend, -inf = may not), made once: SDPA would turn a bool mask into this on
        # every call (the same values: results are bit-identical). Action t sees actions <= t, and memory row s
        # (0 = time token, s >= 1 = observation s-1) when s - 1 <= t.
        if cfg.causal_attn:
            ti = torch.arange(t)
            self.register_buffer("self_mask", _additive(ti[:, None] >= ti[None, :]), persistent=False)
            si = torch.arange(1 + to)
            self.register_buffer("memory_mask", _additive(ti[:, None] >= (si[None, :] - 1)), persistent=False)
        else:
            self.self_mask = None
            self.memory_mask = None
        self.apply(self._init)
        nn.init.normal_(self.pos_emb, std=0.02)
        nn.init.normal_(self.cond_pos_emb, std=0.02)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    # Pieces shared by the plain forward and the caching runtime (caching.py), so both run the same ops.
    def embed_sample(self, sample: torch.Tensor) -> torch.Tensor:
        return self.drop(self.input_emb(sample) + self.pos_emb)

    def time_token(self, timestep: torch.Tensor, batch: int) -> torch.Tensor:
        if timestep.dim() == 0:
            timestep = timestep.expand(batch)
        return self.cond_mlp(self.drop(self.time_emb(timestep)[:, None, :] + self.cond_pos_emb[:, :1]))

    def obs_tokens(self, cond: torch.Tensor) -> torch.Tensor:
        return self.cond_mlp(self.drop(self.cond_obs_emb(cond) + self.cond_pos_emb[:, 1:]))

    def output(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.ln_f(x))

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor | int, cond: torch.Tensor) -> torch.Tensor:
        if not torch.is_tensor(timestep):
            timestep = torch.tensor(timestep, device=sample.device)
        time_tok, obs_tok = self.time_token(timestep, sample.shape[0]), self.obs_tokens(cond)
        x = self.embed_sample(sample)
        for layer in self.layers:
            x = layer(x, time_tok, obs_tok, self.self_mask, self.memory_mask)
        return self.output(x)
