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

Documents are checked against Dapr's resource types (`schema.Obj`, keys matched exactly as
they are in Dapr's manifests): a wrong type, or a key Dapr does not have, is a ConfigError
naming the file, the document, the path inside it and its line. Kubernetes' object metadata
(labels, annotations, uid, ...) is accepted and ignored.
"""

from __future__ import annotations

import base64
import datetime
import json
import os
from pathlib import Path
from typing import Any

import yaml

from layotto.config.foreign import ignored_keys
from layotto.config.model import BLOCKS, BulkSubscribeSpec, ComponentSpec, RuntimeConfig, SubscriptionSpec
from layotto.config.resiliency import ResiliencyResource, check_references, merge, resiliency_resource
from layotto.config.schema import MAX_DEPTH, MAX_YAML_NODES, At, Marks, Obj, check_tree, decode, describe, suggest
from layotto.config.tracing import TracingResource, dapr_configuration, merge_tracing
from layotto.errors import ConfigError

API_VERSION_PREFIX = "dapr.io/"

#: Dapr's spec.type prefix -> our block name, where they differ.
_BLOCK_ALIASES: dict[str, str] = {
    "secretstore": "secretstores",
    "binding": "bindings",
    "crypto": "cryption",
    "cryptography": "cryption",
}
#: Dapr's component categories that have no building block here: skipped with a warning.
_DAPR_ONLY_PREFIXES = frozenset({"middleware", "conversation", "workflow", "workflows", "jobs"})

#: Dapr metadata that means something only to Dapr's own runtime (actors, outbox, ...);
#: dropped so that a component never sees, or complains about, settings it cannot honour.
_DAPR_ONLY_METADATA: dict[str, frozenset[str]] = {
    "state": frozenset({"actorstatestore", "outboxpublishpubsub", "outboxpublishtopic", "outboxpubsub"}),
}

#: Document kinds other than Component and Subscription that a Dapr resources folder may hold.
_OTHER_KINDS = frozenset({"configuration", "httpendpoint"})
_KINDS = ("Component", "Subscription", "Configuration", "Resiliency", "HTTPEndpoint")
#: What one document becomes (a Configuration: its tracing settings).
_Resource = ComponentSpec | SubscriptionSpec | TracingResource | ResiliencyResource

_COMPONENT_KEYS = ("apiVersion", "kind", "metadata", "spec", "auth", "scopes")
_SUBSCRIPTION_KEYS = ("apiVersion", "kind", "metadata", "spec", "scopes")
_OBJECT_META_KEYS = ("name",)
_SPEC_KEYS = ("type", "version", "metadata")
_SPEC_DAPR = ("ignoreErrors", "initTimeout")
_ITEM_KEYS = ("name", "value", "secretKeyRef", "envRef")
_SECRET_KEY_REF_KEYS = ("name", "key")
_SUBSCRIPTION_SPEC_KEYS = (
    "pubsubname",
    "pubsubName",
    "topic",
    "route",
    "routes",
    "metadata",
    "deadLetterTopic",
    "bulkSubscribe",
)
_BULK_SUBSCRIBE_KEYS = ("enabled", "maxMessagesCount", "maxAwaitDurationMs")
_INT32_MAX = 2**31 - 1


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, noting the line of each mapping and list it builds, and of their
    keys and items, so that errors about a value can say where it is.

    The pure-Python loader on purpose: libyaml's CSafeLoader composes nodes by recursing in C,
    and a deeply nested document (`[[[...`) crashes the process instead of raising."""

    def __init__(self, stream: str, marks: Marks) -> None:
        super().__init__(stream)
        self.noted = marks

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        data = super().construct_object(node, deep)
        if isinstance(node, yaml.MappingNode) and isinstance(data, dict):
            keys = {k.value: k.start_mark.line + 1 for k, _ in node.value if isinstance(k, yaml.ScalarNode)}
            self.noted.note(data, node.start_mark.line + 1, keys)
        elif isinstance(node, yaml.SequenceNode) and isinstance(data, list):
            self.noted.note(data, node.start_mark.line + 1, [n.start_mark.line + 1 for n in node.value])
        return data


def load_into(cfg: RuntimeConfig, resources_path: str) -> None:
    """Add the components found in `resources_path` (a folder, or one file) to `cfg`."""
    root = Path(resources_path)
    try:
        if root.is_dir():
            files = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in (".yaml", ".yml"))
        elif root.is_file():
            files = [root]
        else:
            raise ConfigError("resources path does not exist", resources_path)
    except OSError as exc:
        raise ConfigError(f"cannot read the resources folder: {exc.strerror or exc}", resources_path) from None
    taken = {(c.block, c.name) for c in cfg.components}
    for path in files:
        for spec in load_file(path, cfg.app.app_id, cfg.warnings):
            if isinstance(spec, SubscriptionSpec):
                cfg.subscriptions.append(spec)
                continue
            if isinstance(spec, TracingResource):
                merge_tracing(cfg, spec)
                continue
            if isinstance(spec, ResiliencyResource):
                merge(cfg.resiliency, spec.spec)
                continue
            if (spec.block, spec.name) in taken:
                raise ConfigError(f"duplicate {spec.block} component name '{spec.name}'", spec.source)
            taken.add((spec.block, spec.name))
            cfg.components.append(spec)
    # Once every document is in: a target may name a policy of another document.
    check_references(cfg.resiliency)


def load_file(path: Path, app_id: str, warnings: list[str]) -> list[_Resource]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read file: {exc.strerror or exc}", str(path)) from None
    marks = Marks()
    documents = _parse(decode(data, str(path)), str(path), marks)
    specs: list[_Resource] = []
    for index, doc in enumerate(documents):
        if doc is None:  # an empty document between two `---`
            continue
        at = At(f"{path}: document {index + 1}", line=marks.line(doc), yaml=True, marks=marks)
        check_tree(doc, at, max_nodes=MAX_YAML_NODES)
        spec = _document(doc, at, app_id, warnings)
        if spec is not None:
            specs.append(spec)
    return specs


def _parse(text: str, where: str, marks: Marks) -> list[Any]:
    documents: list[Any] = []
    loader: _Loader | None = None
    try:
        loader = _Loader(text, marks)
        while loader.check_data():  # type: ignore[no-untyped-call]  # (untyped in types-PyYAML)
            documents.append(loader.get_data())
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        problem = f"character #x{exc.character:04x}: {exc.reason}" if isinstance(exc.character, int) else exc.reason
        raise ConfigError(f"malformed YAML at line {line} column {column}: {problem}", where) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"malformed YAML{at}: {problem}", where) from None
    except RecursionError:
        raise ConfigError(f"malformed YAML: nested deeper than {MAX_DEPTH} levels", where) from None
    except (ValueError, TypeError, OverflowError) as exc:
        # PyYAML's own constructors: a timestamp that is no date, an integer of too many digits.
        problem = "a number has too many digits" if "digits" in str(exc) else str(exc)
        raise ConfigError(f"malformed YAML in document {len(documents) + 1}: {problem}", where) from None
    finally:
        if loader is not None:
            loader.dispose()
    return documents


def parse_document(doc: Any, source: str, app_id: str, warnings: list[str]) -> _Resource | None:
    """One YAML document -> a ComponentSpec or SubscriptionSpec; None for a document that is
    skipped (with a warning) or scoped to other apps."""
    at = At(source, yaml=True)
    check_tree(doc, at, max_nodes=MAX_YAML_NODES)
    return _document(doc, at, app_id, warnings)


def _document(doc: Any, at: At, app_id: str, warnings: list[str]) -> _Resource | None:
    top = Obj(doc, at, "a document", fold_case=False)
    api_version = top.get("apiVersion")
    if not isinstance(api_version, str) or not api_version.startswith(API_VERSION_PREFIX):
        raise top.where("apiVersion").error(f"apiVersion must be dapr.io/v1alpha1, got {describe(api_version, True)}")
    kind = top.text("kind")
    if kind == "Subscription":
        return _subscription(top, app_id, warnings)
    if kind == "Configuration":
        _name(top, required=False)
        return dapr_configuration(top, warnings)
    if kind == "Resiliency":
        _name(top, required=False)
        resource = resiliency_resource(top, warnings)
        return resource if _in_scope(top, app_id) else None
    if kind != "Component":
        if kind.lower() in _OTHER_KINDS:
            warnings.append(f"{at}: Dapr {kind} resources are not supported; the document is ignored")
            return None
        close = suggest(kind, _KINDS, cutoff=0.7)
        hint = f" (did you mean {close!r}?)" if close else ""
        raise top.where("kind").error(f"kind must be Component or Subscription, got {kind!r}{hint}")
    top.check_keys(_COMPONENT_KEYS)
    name = _name(top, required=True)
    source = f"{at.source} (component '{name}')"
    top.at = At(source, line=at.line, yaml=True, marks=at.marks)
    spec = top.mapping("spec") or Obj({}, top.where("spec"), "spec", fold_case=False)
    spec.check_keys(_SPEC_KEYS, _SPEC_DAPR)
    full_type = spec.get("type")
    prefix, _, type_name = full_type.partition(".") if isinstance(full_type, str) else ("", "", "")
    if not prefix or not type_name:
        raise spec.where("type").error(f"spec.type must look like 'state.redis', got {describe(full_type, True)}")
    block = _BLOCK_ALIASES.get(prefix, prefix)
    if block not in BLOCKS:
        close = None if prefix in _DAPR_ONLY_PREFIXES else suggest(prefix, [*BLOCKS, *_BLOCK_ALIASES], cutoff=0.8)
        if close is not None:
            raise spec.where("type").error(
                f"unknown building block {prefix!r} in {full_type!r}; did you mean {close!r}?"
            )
        warnings.append(f"{source}: Dapr component type '{full_type}' has no building block here; ignored")
        return None
    kind = ""
    if block == "custom":
        # Dapr has no custom components: `custom.<kind>.<type>` is this runtime's spelling of
        # upstream Layotto's `custom_component: {<kind>: {<name>: {type}}}`.
        kind, _, type_name = type_name.partition(".")
        if not kind or not type_name:
            raise spec.where("type").error(
                f"a custom component's spec.type must look like 'custom.<kind>.<type>', got {full_type!r}"
            )
    version = spec.text("version")
    if not _in_scope(top, app_id):
        return None
    auth = top.mapping("auth")
    secret_store = ""
    if auth is not None:
        auth.check_keys(("secretStore",))
        secret_store = auth.text("secretStore")
    metadata, refs = _metadata(spec, secret_store)
    dropped = _DAPR_ONLY_METADATA.get(block, frozenset())
    metadata = {k: v for k, v in metadata.items() if k.lower() not in dropped}
    if block == "state" and not any(k.lower() == "keyprefix" for k in metadata):
        # daprd's default key layout, `<app id>||<key>`: data written by daprd stays readable.
        metadata["keyPrefix"] = "appid"
    extras: dict[str, Any] = {"dapr_type": full_type, "version": version or "v1"}
    if refs:
        extras["secret_ref"] = refs
    return ComponentSpec(
        block=block, name=name, type=type_name, metadata=metadata, extras=extras, source=source, kind=kind
    )


def _name(top: Obj, *, required: bool) -> str:
    meta = top.mapping("metadata") or Obj({}, top.where("metadata"), "metadata", fold_case=False)
    meta.check_keys(_OBJECT_META_KEYS, ignored_keys("kubernetes", "object_meta"))
    name = meta.get("name")
    if name is None or name == "":
        if required:
            raise top.at.error("metadata.name is missing")
        return ""
    if not isinstance(name, str):
        raise meta.where("name").error(f"metadata.name must be a string, got {describe(name, True)}")
    return name


def _in_scope(top: Obj, app_id: str) -> bool:
    """As Dapr: a scoped resource exists only for the app ids it names."""
    scopes = top.items("scopes")
    for scope, at in scopes:
        if not isinstance(scope, str):
            raise at.error(f"scopes must be a list of app ids, got {describe(scope, True)} in it")
    return not scopes or app_id in (scope for scope, _ in scopes)


def _subscription(top: Obj, app_id: str, warnings: list[str]) -> SubscriptionSpec | None:
    """A Subscription: v1alpha1 routes with `route`, v2alpha1 with `routes: {rules, default}`."""
    top.check_keys(_SUBSCRIPTION_KEYS)
    name = _name(top, required=False)
    source = f"{top.at.source} (subscription '{name}')"
    top.at = At(source, line=top.at.line, yaml=True, marks=top.at.marks)
    spec = top.mapping("spec") or Obj({}, top.where("spec"), "spec", fold_case=False)
    spec.check_keys(_SUBSCRIPTION_SPEC_KEYS)
    pubsub = spec.text("pubsubname") or spec.text("pubsubName")
    topic = spec.text("topic")
    if not pubsub or not topic:
        warnings.append(f"{source}: a Subscription needs spec.pubsubname and spec.topic; the document is ignored")
        return None
    bulk = _bulk_subscribe(spec)
    if not _in_scope(top, app_id):
        return None
    routes = spec.mapping("routes", "spec.routes")
    rules: list[tuple[str, str]] = []
    default = spec.text("route")
    if routes is not None:
        routes.check_keys(("rules", "default"))
        for rule in routes.objects("rules", "a rule"):
            rule.check_keys(("match", "path"))
            rules.append((rule.text("match"), rule.text("path")))
        default = routes.text("default") or default
    metadata = spec.mapping("metadata", "spec.metadata")
    return SubscriptionSpec(
        name=name,
        pubsub_name=pubsub,
        topic=topic,
        rules=rules,
        default_route=default,
        dead_letter_topic=spec.text("deadLetterTopic"),
        metadata={str(k): _value(v) for k, v in metadata.value.items()} if metadata is not None else {},
        source=source,
        bulk_subscribe=bulk,
    )


def _bulk_subscribe(spec: Obj) -> BulkSubscribeSpec | None:
    """`spec.bulkSubscribe`, the same in v1alpha1 and v2alpha1 (Dapr's int32 fields)."""
    bulk = spec.mapping("bulkSubscribe")
    if bulk is None:
        return None
    bulk.check_keys(_BULK_SUBSCRIBE_KEYS)
    return BulkSubscribeSpec(
        enabled=bulk.boolean("enabled"),
        max_messages_count=bulk.integer("maxMessagesCount", low=0, high=_INT32_MAX),
        max_await_duration_ms=bulk.integer("maxAwaitDurationMs", low=0, high=_INT32_MAX),
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
    plain = _plain(raw)
    return plain if isinstance(plain, str) else json.dumps(plain)


def _plain(raw: Any) -> Any:
    """A YAML value as JSON has it: timestamps as ISO text, binary as base64, keys as text."""
    if isinstance(raw, dict):
        return {k if isinstance(k, str) else _value(k): _plain(v) for k, v in raw.items()}
    if isinstance(raw, list | tuple):
        return [_plain(v) for v in raw]
    if isinstance(raw, datetime.date):  # datetime.datetime too
        return raw.isoformat()
    if isinstance(raw, bytes):
        return base64.b64encode(raw).decode("ascii")
    if raw is None or isinstance(raw, str | int | float | bool):
        return raw
    return str(raw)


def _metadata(spec: Obj, secret_store: str) -> tuple[dict[str, str], list[dict[str, str]]]:
    raw = spec.get("metadata")
    if raw is None:
        return {}, []
    if not isinstance(raw, list):
        where = spec.where("metadata")
        raise where.error(f"spec.metadata must be a list of {{name, value}} items, got {describe(raw, True)}")
    values: dict[str, str] = {}
    refs: list[dict[str, str]] = []
    for item in spec.objects("metadata", "a metadata item"):
        item.check_keys(_ITEM_KEYS)
        key = item.get("name")
        if not isinstance(key, str) or not key:
            raise item.at.error(f"a metadata item must be a mapping with a name, got name {describe(key, True)}")
        ref = item.mapping("secretKeyRef")
        if ref is not None:
            ref.check_keys(_SECRET_KEY_REF_KEYS)
            secret_name = ref.text("name")
            if not secret_name:
                raise ref.at.error("secretKeyRef.name is missing")
            if not secret_store:
                raise item.at.error(f"metadata '{key}' uses secretKeyRef but auth.secretStore is not set")
            refs.append(
                {
                    "store_name": secret_store,
                    "key": secret_name,
                    "sub_key": ref.text("key") or secret_name,
                    "inject_as": key,
                }
            )
        elif item.get("envRef") is not None:
            values[key] = os.environ.get(item.text("envRef"), "")
        else:
            values[key] = _value(item.get("value"))
    return values, refs
