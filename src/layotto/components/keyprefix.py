"""Upstream's `keyPrefix` strategies (none, name, appid, or a literal prefix), which the State,
Lock and Sequencer APIs apply to app keys. What differs per block stays with the block: the
default strategy, case handling and the head (`lock|||`, `sequencer|||`) put before the prefix."""

from __future__ import annotations

from layotto.errors import ConfigError

SEPARATOR = "||"


def key_prefix(strategy: str, store_name: str, app_id: str) -> str:
    """What goes before an app's key: "" (none, or appid without an app id), `<store>||`
    (name), `<app id>||` (appid) or `<strategy>||` (anything else: a literal prefix)."""
    lowered = strategy.lower()
    if lowered in ("", "none"):
        return ""
    if lowered == "name":
        return store_name + SEPARATOR
    if lowered == "appid":
        return app_id + SEPARATOR if app_id else ""
    return strategy + SEPARATOR


def lock_style_strategy(raw: object, where: str) -> str:
    """The strategy as Lock and Sequencer read it: appid when unset, no '||', lower-cased
    (upstream lower-cases literal prefixes too)."""
    text = str(raw or "")
    if not text:
        return "appid"
    if SEPARATOR in text:
        raise ConfigError(f"input key/keyPrefix '{text}' can't contain '{SEPARATOR}'", where)
    return text.lower()
