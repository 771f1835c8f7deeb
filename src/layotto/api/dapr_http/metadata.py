"""daprd's metadata endpoints: `GET /v1.0/metadata`, `PUT /v1.0/metadata/<key>`.

What they report is what Dapr's gRPC GetMetadata reports (one `DaprMetadata` per sidecar, so
an attribute set through either API is seen through both), written in daprd's HTTP shape.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from layotto.api.dapr.metadata import DaprMetadata
from layotto.api.dapr_http.common import Part, Route, json_reply, no_content
from layotto_proto.dapr.proto.runtime.v1 import metadata_pb2 as pb

__all__ = ["MetadataApi", "metadata_json"]


def _subscription(sub: pb.PubsubSubscription) -> dict[str, Any]:
    out: dict[str, Any] = {"pubsubname": sub.pubsub_name, "topic": sub.topic}
    if sub.metadata:
        out["metadata"] = dict(sorted(sub.metadata.items()))
    if sub.rules.rules:
        out["rules"] = [
            {k: v for k, v in (("match", rule.match), ("path", rule.path)) if v} for rule in sub.rules.rules
        ]
    out["deadLetterTopic"] = sub.dead_letter_topic
    out["type"] = pb.PubsubSubscriptionType.Name(sub.type)
    return out


def metadata_json(reply: pb.GetMetadataResponse) -> dict[str, Any]:
    """GetMetadata's reply in the shape daprd's HTTP API writes it (its own field names, empty
    fields left out)."""
    out: dict[str, Any] = {}
    if reply.id:
        out["id"] = reply.id
    if reply.runtime_version:
        out["runtimeVersion"] = reply.runtime_version
    if reply.enabled_features:
        out["enabledFeatures"] = list(reply.enabled_features)
    if reply.registered_components:
        out["components"] = [
            {
                k: v
                for k, v in (
                    ("name", c.name),
                    ("type", c.type),
                    ("version", c.version),
                    ("capabilities", list(c.capabilities)),
                )
                if v
            }
            for c in reply.registered_components
        ]
    if reply.extended_metadata:
        out["extended"] = dict(sorted(reply.extended_metadata.items()))
    if reply.subscriptions:
        out["subscriptions"] = [_subscription(s) for s in reply.subscriptions]
    app = reply.app_connection_properties
    connection = {
        k: v
        for k, v in (
            ("port", app.port),
            ("protocol", app.protocol),
            ("channelAddress", app.channel_address),
            ("maxConcurrency", app.max_concurrency),
        )
        if v
    }
    if connection:
        out["appConnectionProperties"] = connection
    actors = reply.actor_runtime
    out["actorRuntime"] = {
        "runtimeStatus": pb.ActorRuntime.ActorRuntimeStatus.Name(actors.runtime_status),
        "hostReady": actors.host_ready,
    }
    return out


class MetadataApi(Part[DaprMetadata]):
    def routes(self) -> list[Route]:
        return [
            Route(("GET",), "/v1.0/metadata", self.get),
            Route(("PUT",), "/v1.0/metadata/{key}", self.put),
        ]

    async def get(self, request: web.Request) -> web.StreamResponse:
        return json_reply(metadata_json(self.core.response()))

    async def put(self, request: web.Request) -> web.StreamResponse:
        self.core.extended[request.match_info["key"]] = (await request.read()).decode("utf-8", errors="replace")
        return no_content()
