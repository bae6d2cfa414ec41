"""The builder's decoder graph with its LM head applied to each row's last position only.

onnxruntime-genai's graph computes logits for every input position ([B, S, vocab]); the engine needs
the last one of each row. A prefill of S prompt tokens therefore spent S x hidden x vocab
multiply-adds in the LM head (576 x 49152 for smollm2: a fifth of a token's compute) and wrote S x
vocab floats, to keep one row of them. The graph is changed in memory, never on disk (the folder
stays what onnxruntime-genai loads): a GatherElements before the head picks each row's last real
position, from the inputs the graph already has:

    last = sum(attention_mask[b]) - 1 - (mask width - S)      clamped into [0, S - 1]

Right-padded prompts (P = 0) get their own last token, a chunk after P cached positions its last
token, and a decode step (S = 1) position 0 whatever its row's length. ``logits`` becomes [B, 1,
vocab].
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import onnx
from onnx import TensorProto, helper

log = logging.getLogger(__name__)
_PAST = re.compile(r"past_key_values\.(\d+)\.(key|value)")
_PREFIX = "/inferd/last_position"
_MIN_OPSET = 13  # ReduceSum/Unsqueeze take their axes as inputs


def last_position_graph(path: Path) -> bytes | None:
    """The serialized graph (weights stay in their external file, if any), or None when the graph
    is not in the expected form; the caller then serves it as it is."""
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises its own error types for a bad file
        log.warning("%s: not trimming the LM head: %s", path, exc)
        return None
    graph = model.graph
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    heads = [node for node in graph.node if "logits" in node.output]
    inputs = {value.name for value in graph.input}
    genai = any(_PAST.fullmatch(name) for name in inputs)  # inferd's own export has its head trimmed
    if not genai or opset < _MIN_OPSET or len(heads) != 1 or not {"input_ids", "attention_mask"} <= inputs:
        return None
    head = heads[0]
    hidden = head.input[0]
    graph.node.extend(_gather_last(hidden))
    head.input[0] = f"{_PREFIX}/hidden"
    return model.SerializeToString()


def _gather_last(hidden: str) -> list[onnx.NodeProto]:
    def name(part: str) -> str:
        return f"{_PREFIX}/{part}"

    def const(part: str, values: list[int], scalar: bool = False) -> onnx.NodeProto:
        dims: list[int] = [] if scalar else [len(values)]
        tensor = helper.make_tensor(name(part), TensorProto.INT64, dims, values)
        return helper.make_node("Constant", [], [name(part)], value=tensor)

    node = helper.make_node
    return [
        const("one", [1]),
        const("one_scalar", [1], scalar=True),
        const("zero_scalar", [0], scalar=True),
        const("axes_12", [1, 2]),
        const("slice_0", [0]),
        const("slice_2", [2]),
        const("slice_3", [3]),
        # lengths [B] and the widths S (input positions) and T (mask)
        node("ReduceSum", ["attention_mask", name("one")], [name("lengths")], keepdims=0),
        node("Shape", ["input_ids"], [name("ids_shape")]),
        node("Gather", [name("ids_shape"), name("one_scalar")], [name("s")], axis=0),
        node("Shape", ["attention_mask"], [name("mask_shape")]),
        node("Gather", [name("mask_shape"), name("one_scalar")], [name("t")], axis=0),
        # last = lengths - 1 - (T - S), clamped into [0, S - 1]
        node("Sub", [name("t"), name("s")], [name("past")]),
        node("Add", [name("past"), name("one_scalar")], [name("past_1")]),
        node("Sub", [name("lengths"), name("past_1")], [name("last_raw")]),
        node("Sub", [name("s"), name("one_scalar")], [name("s_1")]),
        node("Max", [name("last_raw"), name("zero_scalar")], [name("last_low")]),
        node("Min", [name("last_low"), name("s_1")], [name("last")]),
        # hidden [B, S, H] -> [B, 1, H] at each row's last
        node("Unsqueeze", [name("last"), name("axes_12")], [name("last_3d")]),
        node("Shape", [hidden], [name("hidden_shape")]),
        node("Slice", [name("hidden_shape"), name("slice_0"), name("one")], [name("b")]),
        node("Slice", [name("hidden_shape"), name("slice_2"), name("slice_3")], [name("h")]),
        node("Concat", [name("b"), name("one"), name("h")], [name("index_shape")], axis=0),
        node("Expand", [name("last_3d"), name("index_shape")], [name("index")]),
        node("GatherElements", [hidden, name("index")], [name("hidden")], axis=1),
    ]
