"""Export a Llama-architecture decoder (transformers' ``LlamaForCausalLM``) to the ONNX layout the engine
batches (needs the ``generative`` extra: torch and transformers; the server never imports this module).

The graph, per execution of ``B`` sequences advancing ``S`` tokens each over ``P`` cached positions:

- inputs ``input_ids`` [B, S] int64, ``attention_mask`` [B, P+S] int64 (0: a padding position, never
  attended), ``position_ids`` [B, S] int64, and ``past.{i}.key`` / ``past.{i}.value`` [B, kv_heads, P,
  head_dim] float32 for every layer ``i``;
- outputs ``logits`` [B, vocab] float32 (of each sequence's last position only: the engine samples one
  token) and ``present.{i}.key`` / ``present.{i}.value`` [B, kv_heads, P+S, head_dim] (past + new).

Sequences of different lengths share one execution by padding on the left: the mask hides the padding
and positions come from ``position_ids``, so a row's result does not depend on its companions.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

OPSET = 17


class _Decoder(nn.Module):  # type: ignore[misc]
    """The forward pass of ``LlamaForCausalLM`` with the KV cache as plain tensors."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        config = model.config
        self.layers = model.model.layers
        self.norm = model.model.norm
        self.embed = model.model.embed_tokens
        self.lm_head = model.lm_head
        self.heads = config.num_attention_heads
        self.kv_heads = config.num_key_value_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // self.heads
        theta = _rope_theta(config)
        inv_freq = 1.0 / (theta ** (torch.arange(0, self.head_dim, 2, dtype=torch.float32) / self.head_dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor,
        *past: torch.Tensor,
    ) -> tuple[torch.Tensor, ...]:
        batch, new = input_ids.shape
        total = attention_mask.shape[1]
        hidden = self.embed(input_ids)
        freqs = position_ids.to(torch.float32)[:, :, None] * self.inv_freq[None, None, :]
        angles = torch.cat([freqs, freqs], dim=-1)[:, None, :, :]
        cos, sin = angles.cos(), angles.sin()
        # Key j is visible to new token i when it is not padding and not in i's future.
        keys = torch.arange(total, device=input_ids.device)[None, :]
        queries = (total - new + torch.arange(new, device=input_ids.device))[:, None]
        visible = (keys <= queries)[None, None, :, :] & (attention_mask[:, None, None, :] > 0)
        bias = torch.where(visible, 0.0, torch.finfo(torch.float32).min)
        presents: list[torch.Tensor] = []
        for index, layer in enumerate(self.layers):
            attention = layer.self_attn
            normed = layer.input_layernorm(hidden)
            q = attention.q_proj(normed).view(batch, new, self.heads, self.head_dim).transpose(1, 2)
            k = attention.k_proj(normed).view(batch, new, self.kv_heads, self.head_dim).transpose(1, 2)
            v = attention.v_proj(normed).view(batch, new, self.kv_heads, self.head_dim).transpose(1, 2)
            q = q * cos + _rotate_half(q) * sin
            k = k * cos + _rotate_half(k) * sin
            k = torch.cat([past[2 * index], k], dim=2)
            v = torch.cat([past[2 * index + 1], v], dim=2)
            presents += [k, v]
            repeat = self.heads // self.kv_heads
            k_all = k.repeat_interleave(repeat, dim=1)
            v_all = v.repeat_interleave(repeat, dim=1)
            scores = torch.matmul(q, k_all.transpose(2, 3)) / math.sqrt(self.head_dim) + bias
            context = torch.matmul(torch.softmax(scores, dim=-1), v_all)
            context = context.transpose(1, 2).reshape(batch, new, self.heads * self.head_dim)
            hidden = hidden + attention.o_proj(context)
            hidden = hidden + layer.mlp(layer.post_attention_layernorm(hidden))
        last = self.norm(hidden[:, -1, :])
        return (self.lm_head(last), *presents)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


def _rope_theta(config: Any) -> float:
    rope = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    if rope.get("rope_type", "default") not in ("default", None):
        raise ValueError(
            f"rope type {rope['rope_type']!r} is not supported (only the default rotary embedding)"
        )
    theta = rope.get("rope_theta") or getattr(config, "rope_theta", None) or 10000.0
    return float(theta)


def export_decoder(model: Any, path: Path) -> None:
    """Write ``model`` (a ``LlamaForCausalLM``) to ``path`` in the layout above."""
    decoder = _Decoder(model).eval()
    layers = len(decoder.layers)
    past_names = [f"past.{i}.{kind}" for i in range(layers) for kind in ("key", "value")]
    present_names = [f"present.{i}.{kind}" for i in range(layers) for kind in ("key", "value")]
    dynamic: dict[str, dict[int, str]] = {
        "input_ids": {0: "batch", 1: "new"},
        "attention_mask": {0: "batch", 1: "total"},
        "position_ids": {0: "batch", 1: "new"},
        "logits": {0: "batch"},
    }
    dynamic.update({name: {0: "batch", 2: "past"} for name in past_names})
    dynamic.update({name: {0: "batch", 2: "total"} for name in present_names})
    # Traced with 2 rows, 3 new tokens over 2 cached ones, so no size is specialised as a constant.
    ids = torch.zeros((2, 3), dtype=torch.int64)
    mask = torch.ones((2, 5), dtype=torch.int64)
    positions = torch.arange(2, 5, dtype=torch.int64).repeat(2, 1)
    past = [torch.zeros((2, decoder.kv_heads, 2, decoder.head_dim)) for _ in past_names]
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer warnings
        torch.onnx.export(
            decoder,
            (ids, mask, positions, *past),
            str(path),
            input_names=["input_ids", "attention_mask", "position_ids", *past_names],
            output_names=["logits", *present_names],
            dynamic_axes=dynamic,
            opset_version=OPSET,
            dynamo=False,
        )
