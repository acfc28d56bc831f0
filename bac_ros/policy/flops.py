"""Analytic FLOP counts (2 per multiply-add, batch 1; norms, activations and softmax left out)."""
from __future__ import annotations

import torch
from torch import nn

from .config import PolicyConfig


def block_flops(cfg: PolicyConfig, hoisted: bool = True) -> dict[str, float]:
    """FLOPs of one recomputation of each kind of block. Hoisted: the cross-attention keys/values of the
    memory (time and observation rows) are already projected; plain: the block projects all of them."""
    t, e, s = cfg.horizon, cfg.n_emb, 1 + cfg.n_obs_steps
    attn = 2 * 2 * t * e  # scores + weighted sum, per key
    ca_kv = 0 if hoisted else 2 * s * e * 2 * e
    return {"sa": 2 * t * e * 3 * e + attn * t + 2 * t * e * e,
            "ca": 2 * t * e * e + ca_kv + attn * s + 2 * t * e * e,
            "ffn": 2 * t * e * 4 * e * 2}


def cond_token_flops(cfg: PolicyConfig, rows: int, with_kv: bool) -> float:
    """Condition MLP for `rows` memory tokens (+ their K/V in every layer)."""
    e = cfg.n_emb
    return rows * (2 * e * 4 * e * 2 + (cfg.n_layer * 2 * e * 2 * e if with_kv else 0))


def step_fixed_flops(cfg: PolicyConfig, hoisted: bool = True) -> float:
    """Per step, whatever the schedule: sample embedding and output head; plain also re-encodes the
    condition tokens (time + observations) at every step."""
    t, e, a, to = cfg.horizon, cfg.n_emb, cfg.action_dim, cfg.n_obs_steps
    fixed = 2 * t * a * e + 2 * t * e * a
    if not hoisted:
        fixed += cond_token_flops(cfg, 1 + to, with_kv=False) + 2 * to * cfg.encoder.feature_dim * e
    return fixed


def encoder_flops(encoder: nn.Module, image_shape: tuple[int, ...], n_images: int) -> float:
    """Conv and linear FLOPs of the image encoder, read off the output shapes of one forward pass."""
    total = 0.0

    def hook(m, _inp, out):
        nonlocal total
        if isinstance(m, nn.Conv2d):
            k = m.kernel_size[0] * m.kernel_size[1] * m.in_channels // m.groups
            total += 2 * out.numel() * k
        elif isinstance(m, nn.Linear):
            total += 2 * out.numel() * m.in_features

    handles = [m.register_forward_hook(hook) for m in encoder.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        with torch.inference_mode():
            encoder(torch.zeros(1, *image_shape, device=next(encoder.parameters()).device))
    finally:
        for h in handles:
            h.remove()
    return total * n_images


def inference_flops(cfg: PolicyConfig, block_updates: dict[str, float], encoder: float,
                    hoisted: bool = True) -> float:
    """One inference. `block_updates`: recomputations per block kind summed over the steps ({'sa': n, ...}).
    Hoisted (the caching runtime): observation tokens and their K/V once per inference, time tokens and
    their K/V once per runtime (not counted); plain: all of it at every step."""
    k = cfg.num_steps
    per = block_flops(cfg, hoisted)
    blocks = sum(per[kind] * n for kind, n in block_updates.items())
    once = (cond_token_flops(cfg, cfg.n_obs_steps, with_kv=True) + 2 * cfg.n_obs_steps * cfg.encoder.feature_dim
            * cfg.n_emb) if hoisted else 0.0
    return encoder + once + k * step_fixed_flops(cfg, hoisted) + blocks
