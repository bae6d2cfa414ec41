"""Stateful ONNX models for the sequence-batching tests, built on the fly (nothing checked in)."""

from __future__ import annotations

from pathlib import Path

from modelfactory import _save, _tensor
from onnx import TensorProto, helper

_INT = TensorProto.INT32
_ROW = ["batch", 1]

# The accumulator's sequence_batching, in Triton's field names; {strategy} is direct or oldest.
ACCUMULATOR_CONFIG = """\
max_batch_size: {max_batch_size}
instances: {instances}
sequence_batching:
  max_sequence_idle_microseconds: {idle_us}
  {strategy}
  control_input:
    - name: START
      control: [{{kind: CONTROL_SEQUENCE_START, int32_false_true: [0, 1]}}]
    - name: READY
      control: [{{kind: CONTROL_SEQUENCE_READY, int32_false_true: [0, 1]}}]
    - name: CORRID
      control: [{{kind: CONTROL_SEQUENCE_CORRID, data_type: {corrid}}}]
  state:
    - input_name: STATE_IN
      output_name: STATE_OUT
      data_type: TYPE_INT32
      dims: [1]
      initial_state: [{{name: zero, zero_data: true}}]
"""


def accumulator_config(
    strategy: str,
    max_batch_size: int = 8,
    instances: int = 1,
    idle_us: int = 60_000_000,
    string_ids: bool = False,
    extra: str = "",
) -> str:
    """``strategy``: a YAML line under sequence_batching, e.g. ``direct: {}``; ``extra``: more lines
    under it; ``string_ids``: CORRID is TYPE_STRING (any id, fed as text) instead of TYPE_UINT64."""
    return ACCUMULATOR_CONFIG.format(
        strategy=strategy,
        max_batch_size=max_batch_size,
        instances=instances,
        idle_us=idle_us,
        corrid="TYPE_STRING" if string_ids else "TYPE_UINT64",
    ) + "".join(f"  {line}\n" for line in extra.splitlines())


def accumulator(path: Path, string_ids: bool = False) -> None:
    """A running sum kept as implicit state: ``OUTPUT = (START ? 0 : STATE_IN) + INPUT * READY``,
    ``STATE_OUT = OUTPUT``, and ``SEQ = CORRID`` (the sequence id the model was fed)."""
    corrid = TensorProto.STRING if string_ids else TensorProto.UINT64
    one = helper.make_tensor("one", _INT, [], [1])
    _save(
        path,
        [
            helper.make_node("Sub", ["one", "START"], ["keep"]),
            helper.make_node("Mul", ["STATE_IN", "keep"], ["previous"]),
            helper.make_node("Mul", ["INPUT", "READY"], ["step"]),
            helper.make_node("Add", ["previous", "step"], ["OUTPUT"]),
            helper.make_node("Identity", ["OUTPUT"], ["STATE_OUT"]),
            helper.make_node("Identity", ["CORRID"], ["SEQ"]),
        ],
        [
            _tensor("INPUT", _INT, _ROW),
            _tensor("STATE_IN", _INT, _ROW),
            _tensor("START", _INT, _ROW),
            _tensor("READY", _INT, _ROW),
            _tensor("CORRID", corrid, _ROW),
        ],
        [
            _tensor("OUTPUT", _INT, _ROW),
            _tensor("STATE_OUT", _INT, _ROW),
            _tensor("SEQ", corrid, _ROW),
        ],
        [one],
    )


# What Triton's sequence examples (src/python/examples/simple_*_sequence_*_client.py) expect of
# `simple_sequence`: the first request answers its input plus one, later ones their input.
SIMPLE_SEQUENCE_CONFIG = """\
max_batch_size: 8
sequence_batching:
  direct: {}
  control_input:
    - name: START
      control: [{kind: CONTROL_SEQUENCE_START, int32_false_true: [0, 1]}]
    - name: READY
      control: [{kind: CONTROL_SEQUENCE_READY, int32_false_true: [0, 1]}]
"""


def simple_sequence(path: Path) -> None:
    """``OUTPUT = (INPUT + START) * READY`` (INT32 [batch, 1]), no state of its own."""
    _save(
        path,
        [
            helper.make_node("Add", ["INPUT", "START"], ["started"]),
            helper.make_node("Mul", ["started", "READY"], ["OUTPUT"]),
        ],
        [_tensor("INPUT", _INT, _ROW), _tensor("START", _INT, _ROW), _tensor("READY", _INT, _ROW)],
        [_tensor("OUTPUT", _INT, _ROW)],
    )
