"""components/keyprefix: upstream's keyPrefix strategies, shared by the State, Lock and Sequencer APIs."""

from __future__ import annotations

import pytest

from layotto.components import keyprefix
from layotto.errors import ConfigError

CASES = [
    ("", "store", "app", ""),
    ("none", "store", "app", ""),
    ("NONE", "store", "app", ""),
    ("name", "store", "app", "store||"),
    ("appid", "store", "app", "app||"),
    ("AppId", "store", "", ""),
    ("MyPrefix", "store", "app", "MyPrefix||"),
]


@pytest.mark.parametrize(("strategy", "store", "app_id", "expected"), CASES)
def test_key_prefix(strategy: str, store: str, app_id: str, expected: str) -> None:
    assert keyprefix.key_prefix(strategy, store, app_id) == expected


@pytest.mark.parametrize(("raw", "expected"), [(None, "appid"), ("", "appid"), ("Name", "name"), ("MyApp", "myapp")])
def test_lock_style_strategy(raw: object, expected: str) -> None:
    assert keyprefix.lock_style_strategy(raw, "lock.s.metadata.keyPrefix") == expected


def test_lock_style_strategy_rejects_the_separator() -> None:
    with pytest.raises(ConfigError) as info:
        keyprefix.lock_style_strategy("a||b", "lock.s.metadata.keyPrefix")
    assert info.value.path == "lock.s.metadata.keyPrefix"
    assert "input key/keyPrefix 'a||b' can't contain '||'" in str(info.value)
