"""daprd's configuration endpoints (v1.0 and v1.0-alpha1) over `layotto.core.configuration`.

Keys are this sidecar's app's, under the store's default group and label (`metadata.group` /
`metadata.label` choose others), as Dapr's gRPC API reads them. A subscription sends each
change to the app as daprd does: `POST /configuration/<store>/<key>` with the update event
(`{"id": ..., "items": {...}}`) as JSON, through the invocation engine to this sidecar's app.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from aiohttp import web

from layotto.api.dapr.configuration import VERSION_KEY, dapr_scope
from layotto.api.dapr_http import common
from layotto.api.dapr_http.answers import HttpAnswers, RequestProblem, answer
from layotto.components.configuration.base import ConfigItem, Subscription
from layotto.core.configuration import ConfigurationCore
from layotto.core.problems import Problem
from layotto.errors import ComponentError
from layotto.runtime.invoke import InvokeError, Invoker, InvokeRequest

__all__ = ["ConfigurationApi"]

log = logging.getLogger("layotto.api.dapr_http")

VERSIONS = ("v1.0", "v1.0-alpha1")


def items_json(items: Iterable[ConfigItem]) -> dict[str, dict[str, object]]:
    """daprd's map of configuration items: value, version, metadata, the empty ones left out."""
    out: dict[str, dict[str, object]] = {}
    for item in items:
        one: dict[str, object] = {}
        if item.content:
            one["value"] = item.content
        version = item.metadata.get(VERSION_KEY, "")
        if version:
            one["version"] = version
        if item.metadata:
            one["metadata"] = item.metadata
        out[item.key] = one
    return out


class ConfigurationApi(common.Part[ConfigurationCore]):
    def __init__(self, core: ConfigurationCore, answers: HttpAnswers, invoker: Invoker) -> None:
        super().__init__(core, answers)
        self._invoker = invoker
        #: Open subscriptions by id: the store, the subscription, the task sending its changes.
        self._subscriptions: dict[str, tuple[str, Subscription, asyncio.Task[None]]] = {}

    def routes(self) -> list[common.Route]:
        routes = []
        for version in VERSIONS:
            base = f"/{version}/configuration/{{store}}"
            routes += [
                common.Route(("GET",), base + "/subscribe", self.subscribe),
                common.Route(("GET",), base + "/{id}/unsubscribe", self.unsubscribe),
                common.Route(("GET",), base, self.get),
            ]
        return routes

    async def stop(self) -> None:
        subscriptions, self._subscriptions = self._subscriptions, {}
        for _, sub, task in subscriptions.values():
            sub.close()
            task.cancel()
        await asyncio.gather(*(task for _, _, task in subscriptions.values()), return_exceptions=True)

    @common.answered
    async def get(self, request: web.Request) -> web.StreamResponse:
        store = request.match_info["store"]
        scope = dapr_scope(self.core, store, request.query.getall("key", []), common.query_metadata(request))
        items = await self.core.get(store, scope)
        if not items:
            return common.no_content()
        return common.json_reply(items_json(items), decoded=True)

    @common.answered
    async def subscribe(self, request: web.Request) -> web.StreamResponse:
        store = request.match_info["store"]
        self.core.store(store)
        if self._invoker.app_channel is None:
            raise Problem(RequestProblem.NO_APP_CHANNEL)
        scope = dapr_scope(self.core, store, request.query.getall("key", []), common.query_metadata(request))
        sub = await self.core.subscribe(store, scope)
        task = asyncio.create_task(self._send_changes(store, sub), name=f"dapr-http-configuration-{sub.id}")
        self._subscriptions[sub.id] = (store, sub, task)
        return common.json_reply({"id": sub.id})

    @common.answered
    async def unsubscribe(self, request: web.Request) -> web.StreamResponse:
        store, subscription_id = request.match_info["store"], request.match_info["id"]
        self.core.store(store)
        found = self._subscriptions.get(subscription_id)
        if found is None or found[0] != store:
            # daprd answers this one with its unsubscribe reply's shape, not an error body.
            status, _, message = answer(
                self.answers, Problem(RequestProblem.UNSUBSCRIBE_FAILED, LookupError("not found"), id=subscription_id)
            )
            return common.json_reply({"message": message}, status)
        self._subscriptions.pop(subscription_id, None)
        found[1].close()
        return common.json_reply({"ok": True})

    async def _send_changes(self, store: str, sub: Subscription) -> None:
        try:
            async for change in sub:
                if not change.items:
                    continue
                event = common.go_json({"id": sub.id, "items": items_json(change.items)}, decoded=True).encode()
                for item in change.items:
                    await self._send(store, item.key, event)
        except ComponentError as exc:
            log.warning("configuration subscription %s of store %r ended: %s", sub.id, store, exc)
        finally:
            self._subscriptions.pop(sub.id, None)
            sub.close()

    async def _send(self, store: str, key: str, event: bytes) -> None:
        call = InvokeRequest(
            app_id=self._invoker.rt.app_id,
            method=f"configuration/{store}/{key}",
            data=event,
            content_type=common.JSON,
            verb="POST",
        )
        try:
            await self._invoker.invoke(call)
        except InvokeError as exc:
            # As daprd: the update is logged and dropped, the subscription goes on.
            log.error("error sending configuration item to the app: %s", exc.message)
