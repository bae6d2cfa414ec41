"""``sequence_batching`` in Triton's model-config forms: the JSON of ``GET /v2/models/{m}/config``
and, parsed from that same document, the ``ModelSequenceBatching`` protobuf."""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format

from inferd.datatypes import TRITON_CONFIG_TYPE
from inferd.protocol._generated import grpc_service_pb2 as pb
from inferd.sequence_config import Control, SequenceBatching


def sequence_json(config: SequenceBatching) -> dict[str, Any]:
    document: dict[str, Any] = {
        "max_sequence_idle_microseconds": config.max_sequence_idle_microseconds,
        "control_input": [
            {"name": entry.name, "control": [_control(c) for c in entry.control]}
            for entry in config.control_input
        ],
        "state": [
            {
                "input_name": state.input_name,
                "output_name": state.output_name,
                "data_type": _type(state.data_type),
                "dims": list(state.dims),
                "initial_state": [
                    {
                        "name": initial.name,
                        "data_type": _type(initial.data_type or state.data_type),
                        "dims": list(initial.dims or state.dims),
                        **(
                            {"data_file": initial.data_file}
                            if initial.data_file is not None
                            else {"zero_data": True}
                        ),
                    }
                    for initial in state.initial_state
                ],
            }
            for state in config.state
        ],
    }
    if config.oldest is not None:
        oldest = config.oldest
        document["oldest"] = {
            "max_candidate_sequences": oldest.max_candidate_sequences,
            "preferred_batch_size": list(oldest.preferred_batch_size),
            "max_queue_delay_microseconds": oldest.max_queue_delay_microseconds,
            "preserve_ordering": oldest.preserve_ordering,
        }
    else:
        direct = config.direct
        document["direct"] = {
            "max_queue_delay_microseconds": direct.max_queue_delay_microseconds if direct else 0,
            "minimum_slot_utilization": direct.minimum_slot_utilization if direct else 0.0,
        }
    return document


def sequence_proto(config: SequenceBatching) -> pb.ModelSequenceBatching:
    return json_format.ParseDict(sequence_json(config), pb.ModelSequenceBatching())


def _control(control: Control) -> dict[str, Any]:
    rendered: dict[str, Any] = {"kind": control.kind}
    if control.int32_false_true is not None:
        rendered["int32_false_true"] = list(control.int32_false_true)
    if control.fp32_false_true is not None:
        rendered["fp32_false_true"] = list(control.fp32_false_true)
    if control.bool_false_true is not None:
        rendered["bool_false_true"] = list(control.bool_false_true)
    if control.data_type is not None:
        rendered["data_type"] = _type(control.data_type)
    return rendered


def _type(datatype: str | None) -> str:
    return TRITON_CONFIG_TYPE[datatype] if datatype else "TYPE_INVALID"
