"""PyTorch models built in the tests: TorchScript files (model.pt) and torch.export programs (model.pt2).

The modules live in this file because TorchScript compiles a module from its source.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import torch
from torch import nn

torch.manual_seed(0)


class MLP(nn.Module):
    """FP32 [batch, 4] -> [batch, 3]."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class TwoInputs(nn.Module):
    """(a, b) FP32 [batch, 4] each -> (a + b [batch, 4], rowwise dot product [batch, 1])."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return a + b, (a * b).sum(dim=1, keepdim=True)


class Named(nn.Module):
    """x FP32 [batch, 2] -> {"double": 2x, "negated": -x}."""

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"double": x * 2, "negated": -x}


class Fussy(nn.Module):
    """FP32 [batch, 4] -> itself; raises on a negative value."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if bool((x < 0).any()):
            raise ValueError("negative input")
        return x


def save_script(module: nn.Module, path: Path) -> nn.Module:
    """``torch.jit.script(module)`` saved at ``path``; returns the module in eval mode."""
    path.parent.mkdir(parents=True, exist_ok=True)
    module.eval()
    torch.jit.script(module).save(str(path))
    return module


def save_exported(
    module: nn.Module, examples: tuple[torch.Tensor, ...], path: Path, batch: bool = True
) -> Any:
    """``torch.export.export(module, examples)`` saved at ``path``, the first dimension dynamic when
    ``batch``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    module.eval()
    dynamic = None
    if batch:
        rows = torch.export.Dim("batch", max=1024)
        dynamic = tuple({0: rows} for _ in examples)
    program = torch.export.export(module, examples, dynamic_shapes=dynamic)
    torch.export.save(program, str(path))
    return program


def write_config(model_dir: Path, text: str) -> None:
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / "config.yaml").write_text(textwrap.dedent(text))


MLP_CONFIG = """
platform: pytorch
max_batch_size: 32
inputs:
  - {name: INPUT__0, datatype: FP32, dims: [4]}
outputs:
  - {name: OUTPUT__0, datatype: FP32, dims: [3]}
"""
