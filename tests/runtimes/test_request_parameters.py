"""Request parameters handed to Python models: what is the model's, what is refused, how they group."""

from __future__ import annotations

import math

import pytest

from inferd.errors import InvalidRequest
from inferd.model import Model
from inferd.runtimes.python import parameter_use
from inferd.runtimes.request_parameters import (
    MAX_NAME_LENGTH,
    MAX_PARAMETERS,
    MAX_STRING_LENGTH,
    MAX_TOTAL_LENGTH,
    ParameterGroup,
    accepts_parameters,
    user_parameters,
)


def test_the_servers_own_keys_never_reach_the_model() -> None:
    sent = {
        "sequence_id": 7,
        "sequence_start": True,
        "sequence_end": False,
        "priority": 1,
        "timeout": 100,
        "binary_data_output": True,
        "shared_memory_region": "r",
        "triton_enable_empty_final_response": True,
        "routing_key": "k",
        "headers": "h",
        "scale": 2,
        "mode": "fast",
    }
    share = user_parameters(sent)
    assert share is not None
    assert share.values == {"scale": 2, "mode": "fast"}
    assert user_parameters({"priority": 1, "timeout": 5}) is None
    assert user_parameters({}) is None


def test_equal_parameters_have_equal_keys_and_kinds_stay_apart() -> None:
    def key(parameters: dict[str, object]) -> object:
        share = user_parameters(parameters)
        assert share is not None
        return share.key

    assert key({"a": 1, "b": "x"}) == key({"b": "x", "a": 1})  # the order sent does not matter
    # Equal in Python, different to a model: never one batch.
    assert len({key({"a": 1}), key({"a": 1.0}), key({"a": True})}) == 3
    assert key({"a": 0.0}) != key({"a": -0.0})
    assert key({"a": math.nan}) == key({"a": float("nan")})  # NaN != NaN, but one group
    assert key({"a": 2}) != key({"a": 3})
    # The group of a request with parameters is never the plain shapes of one without.
    shapes = ((2,),)
    assert ParameterGroup(shapes, key({"a": 1})) != shapes
    assert hash(ParameterGroup(shapes, key({"a": 1}))) == hash(ParameterGroup(shapes, key({"a": 1})))


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"a": {"nested": 1}}, "parameter 'a' is an object"),
        ({"a": [1, 2]}, "parameter 'a' is an array"),
        ({"a": None}, "parameter 'a' is null"),
        ({"a": b"raw"}, "parameter 'a' is a bytes"),
        ({"x" * (MAX_NAME_LENGTH + 1): 1}, f"at most {MAX_NAME_LENGTH} are allowed"),
        ({"a": "s" * (MAX_STRING_LENGTH + 1)}, f"at most {MAX_STRING_LENGTH} are allowed"),
        ({f"p{i}": i for i in range(MAX_PARAMETERS + 1)}, f"at most {MAX_PARAMETERS} parameters"),
        ({f"p{i}": i for i in range(10 * MAX_PARAMETERS)}, f"it sent {10 * MAX_PARAMETERS}"),
        (
            {f"p{i}": "s" * MAX_STRING_LENGTH for i in range(3)},
            f"at most {MAX_TOTAL_LENGTH} characters of names and strings in all; parameter 'p1'",
        ),
    ],
)
def test_hostile_parameters_are_refused_naming_the_problem(
    parameters: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidRequest, match=message):
        user_parameters(parameters)


def test_the_limits_themselves_are_accepted() -> None:
    at_limit: dict[str, object] = {f"p{i:02}": i for i in range(MAX_PARAMETERS - 3)}
    at_limit["x" * MAX_NAME_LENGTH] = True
    used = sum(map(len, at_limit))
    at_limit["s"] = "s" * MAX_STRING_LENGTH
    at_limit["t"] = "t" * (MAX_TOTAL_LENGTH - used - MAX_STRING_LENGTH - 2)
    share = user_parameters({**at_limit, "priority": 1})
    assert share is not None and len(share.values) == MAX_PARAMETERS


class _Plain(Model):
    def predict(self, inputs):
        return inputs


class _Aware(Model):
    def predict(self, inputs, parameters):
        return inputs


class _Optional(Model):
    def predict(self, inputs, parameters=None):
        return inputs


class _Wrapped(Model):
    def predict(self, *args, **kwargs):
        return args[0]


class _StreamAware(Model):
    def predict_stream(self, inputs, params):
        yield inputs


def test_a_model_takes_parameters_when_predict_names_a_second_argument() -> None:
    assert not accepts_parameters(_Plain.predict)
    assert accepts_parameters(_Aware.predict)
    assert accepts_parameters(_Optional.predict)
    assert not accepts_parameters(_Wrapped.predict)
    assert parameter_use(_Plain) == (False, False)
    # The default predict_stream calls predict: it takes them when predict does.
    assert parameter_use(_Aware) == (True, True)
    assert parameter_use(_StreamAware) == (False, True)
