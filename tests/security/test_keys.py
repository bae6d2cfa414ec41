"""Key file parsing, hashing, lookup, scopes, and reload keeping the old keys on a bad file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from inferd.security.apis import DEFAULT_APIS, Api
from inferd.security.keys import KeyStore, hash_key, new_key, parse_key_document


def _entry(key_id: str, key: str, extra: str = "") -> str:
    return f"  - id: {key_id}\n    hash: {hash_key(key)}\n{extra}"


def test_new_keys_are_random_and_hash_to_sha256_hex() -> None:
    first, second = new_key(), new_key()
    assert first != second and first.startswith("inferd_") and len(first) > 40
    digest = hash_key(first)
    assert digest.startswith("sha256:") and len(digest) == len("sha256:") + 64
    assert hash_key(first) == digest


def test_lookup_finds_only_the_listed_key(tmp_path: Path) -> None:
    key = new_key()
    path = tmp_path / "keys.yaml"
    path.write_text("keys:\n" + _entry("alice", key))
    store = KeyStore(path)
    principal = store.lookup(key)
    assert principal is not None and principal.id == "alice"
    assert principal.apis == DEFAULT_APIS
    assert store.lookup(key + "x") is None
    assert store.lookup("") is None
    assert store.lookup(hash_key(key)) is None  # the stored hash is not itself a key


def test_model_scopes_are_globs_and_apis_can_be_all() -> None:
    key = new_key()
    text = "keys:\n" + _entry("ops", key, "    models: ['simple', 'identity_*']\n    apis: ['*']\n")
    principal = parse_key_document(text, "test")[next(iter(parse_key_document(text, "test")))]
    assert principal.apis == frozenset(Api)
    assert principal.may_use_model("simple")
    assert principal.may_use_model("identity_fp32")
    assert not principal.may_use_model("simple2")
    assert not principal.may_use_model("other")
    assert not principal.may_use_model("other")  # a cached answer stays the same


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("keys:\n  - id: a\n    hash: md5:abc\n", "sha256"),
        ("keys:\n  - id: a\n    hash: sha256:" + "z" * 64 + "\n", "sha256"),
        ("keys:\n  - id: a\n    hash: sha256:" + "0" * 64 + "\n    apis: [admin]\n", "unknown apis"),
        ("keys:\n  - id: a\n    hash: sha256:" + "0" * 64 + "\n    colour: red\n", "unknown field"),
        ("keys: [", "invalid key file"),
        (
            "keys:\n  - id: a\n    hash: sha256:" + "0" * 64 + "\n  - id: a\n    hash: sha256:" + "1" * 64,
            "appears twice",
        ),
    ],
)
def test_bad_key_files_are_refused_with_a_reason(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_key_document(text, "keys.yaml")


def test_a_missing_file_fails_at_start(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="keys.yaml"):
        KeyStore(tmp_path / "keys.yaml")


def test_reload_on_change_swaps_keys_and_keeps_them_on_a_bad_file(tmp_path: Path) -> None:
    old, new = new_key(), new_key()
    path = tmp_path / "keys.yaml"
    path.write_text("keys:\n" + _entry("old", old))
    store = KeyStore(path)
    assert not store.reload_if_changed()  # unchanged

    path.write_text("keys:\n" + _entry("new", new))
    os.utime(path, ns=(1, 1))  # a different mtime, whatever the file system's resolution
    assert store.reload_if_changed()
    assert store.lookup(old) is None
    principal = store.lookup(new)
    assert principal is not None and principal.id == "new"

    path.write_text("keys: [broken")
    os.utime(path, ns=(2, 2))
    assert not store.reload_if_changed()
    assert store.lookup(new) is not None  # the previous keys stay in force


def test_inline_document_and_file_combine(tmp_path: Path) -> None:
    inline_key, file_key = new_key(), new_key()
    path = tmp_path / "keys.yaml"
    path.write_text("keys:\n" + _entry("from-file", file_key))
    document = json.dumps({"keys": [{"id": "inline", "hash": hash_key(inline_key)}]})
    store = KeyStore(path, document)
    assert len(store) == 2
    assert store.lookup(inline_key) is not None and store.lookup(file_key) is not None


@pytest.mark.parametrize(
    "text",
    [
        "keys:\n  - id: a\n    hash: inferd_SECRETVALUE\n",  # a raw key pasted where the hash goes
        "keys: [\n  inferd_SECRETVALUE",  # broken YAML quoting the line
        "keys:\n  - id: a\n    hash: sha256:" + "0" * 64 + "\n    inferd_SECRETVALUE: 1\n",
    ],
)
def test_errors_never_quote_the_file(text: str) -> None:
    with pytest.raises(ValueError) as error:
        parse_key_document(text, "keys.yaml")
    assert "SECRETVALUE" not in str(error.value)
