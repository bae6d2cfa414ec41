"""Model names are single path segments of a few characters; versions are digits."""

from __future__ import annotations

import pytest

from inferd.errors import InvalidRequest
from inferd.names import MAX_NAME_LENGTH, InvalidName, is_model_name, model_name, model_version


@pytest.mark.parametrize("name", ["a", "mlp", "fraud-a", "resnet_50", "v1.2", "_x", "0", "m" * 128])
def test_names_of_letters_digits_and_separators_are_valid(name: str) -> None:
    assert is_model_name(name) and model_name(name) == name


@pytest.mark.parametrize(
    "name",
    [
        ".",
        "..",
        ".hidden",
        "-rf",
        "a/b",
        "a/../b",
        "/etc",
        "a\\b",
        "a b",
        "a\x00b",
        "a\n",
        "é",
        "a%2Fb",
        "fraud-*",
        "m" * (MAX_NAME_LENGTH + 1),
    ],
)
def test_paths_and_odd_characters_are_not_names(name: str) -> None:
    assert not is_model_name(name)
    with pytest.raises(InvalidName) as raised:
        model_name(name)
    assert isinstance(raised.value, InvalidRequest)  # 400 / INVALID_ARGUMENT on every front-end
    if len(name) > 2:  # the rule is described, the text is not echoed
        assert name not in raised.value.message


def test_the_message_says_which_rule() -> None:
    with pytest.raises(InvalidName, match="required"):
        model_name("")
    with pytest.raises(InvalidName, match="at most 128 characters, got 300"):
        model_name("m" * 300)
    # Refused names answer alike, whatever exists on the server's disk.
    messages = set()
    for name in ("/etc", "/nonexistent", "../secret", "a/../b"):
        with pytest.raises(InvalidName) as raised:
            model_name(name)
        messages.add(raised.value.message)
    assert len(messages) == 1


@pytest.mark.parametrize(("version", "expected"), [(None, None), ("", None), ("1", "1"), ("042", "042")])
def test_versions_are_digits(version: str | None, expected: str | None) -> None:
    assert model_version(version) == expected


@pytest.mark.parametrize("version", ["x", "-1", "1.0", "1e3", " 1", "１", "../1", "9" * 19])
def test_other_versions_are_refused(version: str) -> None:
    with pytest.raises(InvalidName, match="version"):
        model_version(version)
