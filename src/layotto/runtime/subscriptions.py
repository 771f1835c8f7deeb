"""What the app subscribes to, wherever it is declared: the app's own answer (Layotto's or Dapr's
`ListTopicSubscriptions`, an HTTP app's `GET /dapr/subscribe`) or Dapr `Subscription` resources.

A subscription may send a topic's events to several handlers of the app: rules, each a CEL
`match` and a `path`, tried in order, then the default route. We evaluate the common form
`event.<attribute> == "<value>"` (clauses joined by `&&`); a rule we cannot evaluate never
matches, so its events take the default route.

Any of the three may ask for bulk delivery (Dapr's `bulkSubscribe`: `enabled`,
`maxMessagesCount`, `maxAwaitDurationMs`): the events then reach the app in batches
(runtime/delivery.py `BulkDispatcher`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from layotto.config.model import BulkSubscribeSpec, SubscriptionSpec
from layotto.core import cloudevents
from layotto.core.cloudevents import Event

log = logging.getLogger("layotto.subscriptions")

#: The metadata key that carries a subscription's dead-letter topic to the delivery policy.
DEAD_LETTER_KEY = "deadLetterTopic"

#: Dapr's bulk settings are int32 fields.
_INT32_MAX = 2**31 - 1

_CLAUSE = re.compile(r"""^\s*event\.([A-Za-z_][A-Za-z0-9_]*)\s*==\s*(?:"([^"]*)"|'([^']*)')\s*$""")


@dataclass(frozen=True)
class Rule:
    match: str
    path: str


@dataclass(frozen=True)
class TopicSubscription:
    pubsub_name: str
    topic: str
    metadata: Mapping[str, str] = field(default_factory=dict)
    rules: tuple[Rule, ...] = ()
    #: The app's handler for events no rule matches ("" where the callback API has no paths).
    default_route: str = ""
    #: Bulk delivery settings; None (or not `enabled`): one event per callback.
    bulk: BulkSubscribeSpec | None = None

    @property
    def bulk_enabled(self) -> bool:
        return self.bulk is not None and self.bulk.enabled

    def route(self, event: Event) -> str:
        """The app's handler path for `event`."""
        if self.rules:
            attributes = {
                **envelope_of(event),
                "id": event.id,
                "source": event.source,
                "type": event.type,
                "specversion": event.spec_version,
                "datacontenttype": event.data_content_type,
                "topic": event.topic,
            }
            for rule in self.rules:
                if rule_matches(rule.match, attributes):
                    return rule.path
        return self.default_route


def rule_matches(match: str, attributes: Mapping[str, Any]) -> bool:
    if not match.strip():
        return True
    for clause in match.split("&&"):
        found = _CLAUSE.match(clause)
        if found is None:
            return False
        expected = found.group(2) if found.group(2) is not None else found.group(3)
        if str(attributes.get(found.group(1), "")) != expected:
            return False
    return True


def envelope_of(event: Event) -> dict[str, Any]:
    """The event's CloudEvent envelope as published ({} for a raw payload)."""
    try:
        # One level more than a publish may nest: the envelope around the app's data.
        value = cloudevents.parse_json(event.raw, cloudevents.MAX_JSON_DEPTH + 1) if event.raw else None
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def with_dead_letter(metadata: Mapping[str, str], dead_letter_topic: str) -> dict[str, str]:
    out = dict(metadata)
    if dead_letter_topic:
        out[DEAD_LETTER_KEY] = dead_letter_topic
    return out


def _field(entry: Mapping[str, Any], name: str) -> Any:
    # daprd decodes these documents with Go's encoding/json, which matches names in any case.
    lowered = name.lower()
    for key, value in entry.items():
        if key.lower() == lowered:
            return value
    return None


def from_documents(entries: Any, source: str) -> list[TopicSubscription]:
    """Subscriptions from an HTTP app's `GET /dapr/subscribe` answer (Dapr's v1 shape, with
    `route`, or v2, with `routes: {rules, default}`); an entry without pubsub or topic is
    skipped with a warning naming it."""
    if not isinstance(entries, list):
        log.warning("%s: expected a list of subscriptions, got %s; the app subscribes to nothing", source, entries)
        return []
    out: list[TopicSubscription] = []
    for index, entry in enumerate(entries):
        pubsub = _field(entry, "pubsubName") if isinstance(entry, dict) else None
        topic = _field(entry, "topic") if isinstance(entry, dict) else None
        if not isinstance(entry, dict) or not isinstance(pubsub, str) or not isinstance(topic, str) or not topic:
            log.warning("%s: subscription %d has no pubsubname or topic: %s; ignored", source, index, entry)
            continue
        metadata = _field(entry, "metadata")
        metadata = {str(k): str(v) for k, v in metadata.items()} if isinstance(metadata, dict) else {}
        rules, default = routes_of(_field(entry, "routes"), _field(entry, "route"))
        dead_letter = _field(entry, "deadLetterTopic")
        out.append(
            TopicSubscription(
                pubsub,
                topic,
                with_dead_letter(metadata, dead_letter if isinstance(dead_letter, str) else ""),
                rules,
                default or topic,
                bulk_of(_field(entry, "bulkSubscribe"), f"{source}: subscription {index} ({topic})"),
            )
        )
    return out


def bulk_of(value: Any, source: str) -> BulkSubscribeSpec | None:
    """An HTTP app's `bulkSubscribe` object (Dapr's BulkSubscribeJSON); a field of the wrong
    type is left at its default, with a warning naming it."""
    if value is None:
        return None
    if not isinstance(value, dict):
        log.warning("%s: bulkSubscribe must be an object, got %.200r; delivering one event at a time", source, value)
        return None
    enabled = _field(value, "enabled")
    if enabled is not None and not isinstance(enabled, bool):
        log.warning("%s: bulkSubscribe.enabled must be true or false, got %.200r", source, enabled)
        enabled = None

    def count(name: str) -> int:
        raw = _field(value, name)
        if raw is None:
            return 0
        if isinstance(raw, bool) or not isinstance(raw, int) or not 0 <= raw <= _INT32_MAX:
            log.warning("%s: bulkSubscribe.%s must be a whole number, got %.200r; using the default", source, name, raw)
            return 0
        return raw

    return BulkSubscribeSpec(bool(enabled), count("maxMessagesCount"), count("maxAwaitDurationMs"))


def routes_of(routes: Any, route: Any) -> tuple[tuple[Rule, ...], str]:
    """Rules and the default route from a v2 `routes` object and a v1 `route`."""
    rules: list[Rule] = []
    default = route if isinstance(route, str) else ""
    if isinstance(routes, dict):
        for rule in _field(routes, "rules") or ():
            if isinstance(rule, dict):
                rules.append(Rule(str(_field(rule, "match") or ""), str(_field(rule, "path") or "")))
        default = str(_field(routes, "default") or default)
    return tuple(rules), default


def declared(specs: Iterable[SubscriptionSpec]) -> list[TopicSubscription]:
    """The subscriptions of Subscription resources."""
    return [
        TopicSubscription(
            s.pubsub_name,
            s.topic,
            with_dead_letter(s.metadata, s.dead_letter_topic),
            tuple(Rule(match, path) for match, path in s.rules),
            s.default_route,
            s.bulk_subscribe,
        )
        for s in specs
    ]


def merged(
    programmatic: Iterable[TopicSubscription], declarative: Iterable[TopicSubscription]
) -> list[TopicSubscription]:
    """The app's own subscriptions, then the declared ones on other topics (as daprd: a topic
    the app subscribes to itself keeps the app's subscription)."""
    out = list(programmatic)
    taken = {(s.pubsub_name, s.topic) for s in out}
    for sub in declarative:
        if (sub.pubsub_name, sub.topic) in taken:
            log.warning(
                "the app subscribes to %s/%s itself; the Subscription resource for it is ignored",
                sub.pubsub_name,
                sub.topic,
            )
            continue
        taken.add((sub.pubsub_name, sub.topic))
        out.append(sub)
    return out
