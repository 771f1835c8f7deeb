"""Loader for Dapr component manifests (`layotto start --resources-path DIR`).

A Dapr component is a Kubernetes-style document:

    apiVersion: dapr.io/v1alpha1
    kind: Component
    metadata: {name: statestore}
    spec:
      type: state.redis            # <block>.<type>; the block prefix picks the building block
      version: v1
      metadata:
        - {name: redisHost, value: "localhost:6379"}
        - {name: redisPassword, secretKeyRef: {name: redis, key: password}}
    auth: {secretStore: localsecrets}
    scopes: [app1]

Every `*.yaml` / `*.yml` file of the folder is read (several documents per file allowed) and
each component becomes a ComponentSpec beside those of a Layotto JSON config, so both APIs see
the same components. `secretKeyRef` entries become the runtime's `secret_ref` extras, which it
resolves through the loaded secret store once that store is up (secret stores start first).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from layotto.config.model import BLOCKS, ComponentSpec, RuntimeConfig, SubscriptionSpec
from layotto.errors import ConfigError

API_VERSION_PREFIX = "dapr.io/"

#: Dapr's spec.type prefix -> our block name, where they differ.
_BLOCK_ALIASES: dict[str, str] = {
    "secretstore": "secretstores",
    "binding": "bindings",
    "crypto": "cryption",
    "cryptography": "cryption",
}

#: Dapr metadata that means something only to Dapr's own runtime (actors, outbox, ...);
#: dropped so that a component never sees, or complains about, settings it cannot honour.
_DAPR_ONLY_METADATA: dict[str, frozenset[str]] = {
    "state": frozenset({"actorstatestore", "outboxpublishpubsub", "outboxpublishtopic", "outboxpubsub"}),
}

#: Document kinds other than Component and Subscription that a Dapr resources folder may hold.
_OTHER_KINDS = frozenset({"configuration", "resiliency", "httpendpoint"})


def load_into(cfg: RuntimeConfig, resources_path: str) -> None:
    """Add the components found in `resources_path` (a folder, or one file) to `cfg`."""
    root = Path(resources_path)
    if root.is_dir():
        files = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in (".yaml", ".yml"))
    elif root.is_file():
        files = [root]
    else:
        raise ConfigError("resources path does not exist", resources_path)
    taken = {(c.block, c.name) for c in cfg.components}
    for path in files:
        for spec in load_file(path, cfg.app.app_id, cfg.warnings):
            if isinstance(spec, SubscriptionSpec):
                cfg.subscriptions.append(spec)
                continue
            if (spec.block, spec.name) in taken:
                raise ConfigError(f"duplicate {spec.block} component name '{spec.name}'", spec.source)
            taken.add((spec.block, spec.name))
            cfg.components.append(spec)


def load_file(path: Path, app_id: str, warnings: list[str]) -> list[ComponentSpec | SubscriptionSpec]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read file: {exc.strerror}", str(path)) from None
    except UnicodeDecodeError:
        raise ConfigError("not a UTF-8 text file", str(path)) from None
    try:
        documents = list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"malformed YAML{where}: {problem}", str(path)) from None
    specs: list[ComponentSpec | SubscriptionSpec] = []
    for index, doc in enumerate(documents):
        if doc is None:  # an empty document between two `---`
            continue
        source = f"{path}: document {index + 1}"
        spec = parse_document(doc, source, app_id, warnings)
        if spec is not None:
            specs.append(spec)
    return specs


def _mapping(value: Any, where: str, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{what} must be a mapping", where)
    return value


def parse_document(doc: Any, source: str, app_id: str, warnings: list[str]) -> ComponentSpec | SubscriptionSpec | None:
    """One YAML document -> a ComponentSpec or SubscriptionSpec; None for a document that is
    skipped (with a warning) or scoped to other apps."""
    if not isinstance(doc, dict):
        raise ConfigError("a document must be a mapping with apiVersion, kind, metadata and spec", source)
    api_version = str(doc.get("apiVersion", ""))
    kind = str(doc.get("kind", ""))
    if not api_version.startswith(API_VERSION_PREFIX):
        raise ConfigError(f"apiVersion must be dapr.io/v1alpha1, got {api_version!r}", source)
    if kind == "Subscription":
        return _subscription(doc, source, app_id, warnings)
    if kind != "Component":
        if kind.lower() in _OTHER_KINDS:
            warnings.append(f"{source}: Dapr {kind} resources are not supported; the document is ignored")
            return None
        raise ConfigError(f"kind must be Component, got {kind!r}", source)
    meta = _mapping(doc.get("metadata"), source, "metadata")
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        raise ConfigError("metadata.name is missing", source)
    source = f"{source} (component '{name}')"
    spec = _mapping(doc.get("spec"), source, "spec")
    full_type = spec.get("type")
    if not isinstance(full_type, str) or "." not in full_type:
        raise ConfigError(f"spec.type must look like 'state.redis', got {full_type!r}", source)
    prefix, _, type_name = full_type.partition(".")
    block = _BLOCK_ALIASES.get(prefix, prefix)
    if block not in BLOCKS:
        warnings.append(f"{source}: Dapr component type '{full_type}' has no building block here; ignored")
        return None
    if not _in_scope(doc, source, app_id):
        return None
    auth = _mapping(doc.get("auth"), source, "auth")
    secret_store = str(auth.get("secretStore", "") or "")
    metadata, refs = _metadata(spec.get("metadata"), source, secret_store)
    dropped = _DAPR_ONLY_METADATA.get(block, frozenset())
    metadata = {k: v for k, v in metadata.items() if k.lower() not in dropped}
    if block == "state" and not any(k.lower() == "keyprefix" for k in metadata):
        # daprd's default key layout, `<app id>||<key>`: data written by daprd stays readable.
        metadata["keyPrefix"] = "appid"
    extras: dict[str, Any] = {"dapr_type": full_type, "version": str(spec.get("version", "") or "v1")}
    if refs:
        extras["secret_ref"] = refs
    return ComponentSpec(block=block, name=name, type=type_name, metadata=metadata, extras=extras, source=source)


def _in_scope(doc: Mapping[str, Any], source: str, app_id: str) -> bool:
    """As Dapr: a scoped resource exists only for the app ids it names."""
    scopes = doc.get("scopes") or []
    if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
        raise ConfigError("scopes must be a list of app ids", source)
    return not scopes or app_id in scopes


def _subscription(doc: Mapping[str, Any], source: str, app_id: str, warnings: list[str]) -> SubscriptionSpec | None:
    """A Subscription: v1alpha1 routes with `route`, v2alpha1 with `routes: {rules, default}`."""
    name = str(_mapping(doc.get("metadata"), source, "metadata").get("name") or "")
    source = f"{source} (subscription '{name}')"
    spec = _mapping(doc.get("spec"), source, "spec")
    pubsub, topic = spec.get("pubsubname") or spec.get("pubsubName"), spec.get("topic")
    if not isinstance(pubsub, str) or not pubsub or not isinstance(topic, str) or not topic:
        warnings.append(f"{source}: a Subscription needs spec.pubsubname and spec.topic; the document is ignored")
        return None
    if not _in_scope(doc, source, app_id):
        return None
    routes = _mapping(spec.get("routes"), source, "spec.routes")
    rules = []
    for index, rule in enumerate(routes.get("rules") or ()):
        rule = _mapping(rule, f"{source}: spec.routes.rules[{index}]", "a rule")
        rules.append((str(rule.get("match", "") or ""), str(rule.get("path", "") or "")))
    default = str(routes.get("default") or spec.get("route") or "")
    metadata = _mapping(spec.get("metadata"), source, "spec.metadata")
    return SubscriptionSpec(
        name=name,
        pubsub_name=pubsub,
        topic=topic,
        rules=rules,
        default_route=default,
        dead_letter_topic=str(spec.get("deadLetterTopic") or ""),
        metadata={str(k): _value(v) for k, v in metadata.items()},
        source=source,
    )


def _value(raw: Any) -> str:
    """Dapr metadata values are strings; YAML numbers, booleans and structures are turned into
    their text as Dapr's DynamicValue does (structures as JSON)."""
    if isinstance(raw, str):
        return raw
    if isinstance(raw, bool):
        return "true" if raw else "false"
    if raw is None:
        return ""
    if isinstance(raw, int | float):
        return str(raw)
    return json.dumps(raw)


def _metadata(raw: Any, source: str, secret_store: str) -> tuple[dict[str, str], list[dict[str, str]]]:
    if raw is None:
        return {}, []
    if not isinstance(raw, list):
        raise ConfigError("spec.metadata must be a list of {name, value} items", source)
    values: dict[str, str] = {}
    refs: list[dict[str, str]] = []
    for i, item in enumerate(raw):
        where = f"{source}: spec.metadata[{i}]"
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"]:
            raise ConfigError("a metadata item must be a mapping with a name", where)
        key = item["name"]
        if "secretKeyRef" in item:
            ref = _mapping(item["secretKeyRef"], where, "secretKeyRef")
            secret_name = str(ref.get("name", "") or "")
            if not secret_name:
                raise ConfigError("secretKeyRef.name is missing", where)
            if not secret_store:
                raise ConfigError(f"metadata '{key}' uses secretKeyRef but auth.secretStore is not set", where)
            refs.append(
                {
                    "store_name": secret_store,
                    "key": secret_name,
                    "sub_key": str(ref.get("key", "") or secret_name),
                    "inject_as": key,
                }
            )
        elif "envRef" in item:
            values[key] = os.environ.get(str(item["envRef"]), "")
        else:
            values[key] = _value(item.get("value"))
    return values, refs
