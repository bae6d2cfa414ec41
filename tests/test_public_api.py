"""The package root's public names: complete, sorted, and the Model API as documented."""

from __future__ import annotations

import inferd


def test_all_is_sorted_and_every_name_exists() -> None:
    assert inferd.__all__ == sorted(inferd.__all__)
    assert all(hasattr(inferd, name) for name in inferd.__all__)


def test_every_public_class_is_in_all() -> None:
    public = {n for n, value in vars(inferd).items() if isinstance(value, type) and not n.startswith("_")}
    assert public <= set(inferd.__all__)


def test_model_and_tensor_are_the_custom_model_api() -> None:
    from inferd import Model, Tensor

    assert {"Model", "Tensor"} <= set(inferd.__all__)
    assert Tensor("text", "BYTES", [-1]).shape == (-1,)
    assert callable(Model.load) and callable(Model.predict)
