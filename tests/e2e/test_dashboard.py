"""The actuator's /dashboard in a real headless browser (Debian's chromium, driven by selenium):
a sidecar with Redis and in-memory components, one of them cut off from its Redis, an HTTP app
subscribed to a topic, some calls; the page must show the components and their health, the
subscription and its counters, charts with the calls drawn, the config with its secrets masked,
and its screenshot must be a drawn page."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import re
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest
from aiohttp import web
from google.protobuf import any_pb2

from layotto.config import layotto_json
from layotto.runtime.delivery import DeliveryService
from layotto.sidecar import Sidecar
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2 as pb
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2_grpc
from tests.support.httpapp import http_server
from tests.support.services import missing, require, require_binary
from tests.support.sidecar import free_port, layotto_config

T = TypeVar("T")

TOKEN = "tok-" + uuid.uuid4().hex  # a secret-looking metadata key's value
PASSWORD = "pw-" + uuid.uuid4().hex  # a value the runtime copies in from a secret store
URL_PASSWORD = "up-" + uuid.uuid4().hex  # the password part of a URL in a plain metadata value
TOPIC = "orders"
WIDTH, HEIGHT = 1400, 1900


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless chromium with its driver, both Debian's (no browser download)."""
    chromium = require_binary("chromium")
    chromedriver = require_binary("chromedriver")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        missing("selenium is not installed (pip install -e '.[dev]')")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.add_argument(f"--window-size={WIDTH},{HEIGHT}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(chromedriver))
    try:
        yield driver
    finally:
        driver.quit()


@contextlib.asynccontextmanager
async def forwarder(target_port: int) -> AsyncIterator[tuple[int, Callable[[], Any]]]:
    """A TCP relay to `target_port`; yields its port and a coroutine function that cuts it off
    (listener and open connections), so a component behind it goes down."""
    writers: set[asyncio.StreamWriter] = set()

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(1 << 16):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target_port)
        writers.update((writer, up_writer))
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    server = await asyncio.start_server(relay, "127.0.0.1", 0)
    port = int(server.sockets[0].getsockname()[1])

    async def cut() -> None:
        server.close()
        for writer in writers:
            writer.close()
        await server.wait_closed()

    try:
        yield port, cut
    finally:
        await cut()


class App:
    """A Dapr HTTP app subscribed to TOPIC; it drops events whose data is "drop"."""

    def __init__(self) -> None:
        self.events: asyncio.Queue[str] = asyncio.Queue()

    def routes(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/dapr/subscribe", self.subscribe)
        app.router.add_post("/orders", self.order)
        app.router.add_route("*", "/hello", self.hello)
        return app

    async def subscribe(self, request: web.Request) -> web.Response:
        return web.json_response([{"pubsubname": "mem", "topic": TOPIC, "route": "/orders"}])

    async def order(self, request: web.Request) -> web.Response:
        data = str((await request.json()).get("data"))
        self.events.put_nowait(data)
        return web.json_response({"status": "DROP" if data == "drop" else "SUCCESS"})

    async def hello(self, request: web.Request) -> web.Response:
        return web.Response(text="hello")


def _grpc_config(app_port: int, secrets_file: Path, cache_port: int) -> dict[str, Any]:
    return {
        "app": {"app_id": f"dash-{uuid.uuid4().hex[:6]}", "http_port": app_port},
        "secret_store": {
            "vault": {"type": "local.file", "metadata": {"secretsFile": str(secrets_file), "multiValued": "true"}}
        },
        "state": {
            "orders": {"type": "redis", "metadata": {"redisHost": "127.0.0.1:6379", "redisPassword": ""}},
            "cache": {"type": "redis", "metadata": {"redisHost": f"127.0.0.1:{cache_port}", "maxRetries": "0"}},
            "notes": {
                "type": "in-memory",
                "metadata": {"apiToken": TOKEN, "backupUrl": f"https://ops:{URL_PASSWORD}@backup.example"},
                "secret_ref": [{"store_name": "vault", "key": "db", "sub_key": "password", "inject_as": "note"}],
            },
        },
        "pub_subs": {"mem": {"type": "in-memory"}},
    }


async def _calls(address: str, app_id: str) -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = runtime_pb2_grpc.RuntimeStub(channel)
        for i in range(20):
            item = pb.SaveStateRequest(store_name="orders", states=[pb.StateItem(key=f"k{i}", value=b"v")])
            await stub.SaveState(item)
        for _ in range(6):
            message = pb.CommonInvokeRequest(method="hello", data=any_pb2.Any(value=b""))
            await stub.InvokeService(pb.InvokeServiceRequest(id=app_id, message=message))
        for data in (b"1", b"2", b"3", b"drop"):
            await stub.PublishEvent(pb.PublishEventRequest(pubsub_name="mem", topic=TOPIC, data=data))
        with pytest.raises(grpc.aio.AioRpcError):  # an error, for the error series
            await stub.GetState(pb.GetStateRequest(store_name="absent", key="k"))


async def _in_thread(fn: Callable[[], T]) -> T:
    """A blocking browser call, off the loop that serves the sidecar."""
    return await asyncio.to_thread(fn)


def _wait(driver: Any, condition: Callable[[Any], Any], what: str, timeout: float = 20.0) -> Any:
    """Poll `condition` until it holds; a timeout names what the page said meanwhile."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.1).until(condition, what)
    except TimeoutException:
        loaded = driver.find_element("tag name", "body").get_attribute("data-loaded")
        footer = driver.find_element("id", "footer").text
        console = [entry["message"] for entry in driver.get_log("browser")]
        said = f"loaded {loaded!r}, footer {footer!r}, console {console}"
        raise AssertionError(f"{what}: not within {timeout}s; {said}") from None


def _rows(driver: Any, table: str) -> list[list[str]]:
    script = f"return [...document.querySelectorAll('#{table} tbody tr')].map(r => [...r.cells].map(c => c.innerText))"
    return list(driver.execute_script(script))


#: Pixels of the canvas that are neither blank nor grey (the grid and labels are grey): the
#: series' lines and fills.
_COLOURED_PIXELS = """
const canvas = document.getElementById(arguments[0]);
const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
let coloured = 0;
for (let i = 0; i < data.length; i += 4) {
  const [r, g, b, a] = [data[i], data[i + 1], data[i + 2], data[i + 3]];
  if (a > 0 && Math.max(r, g, b) - Math.min(r, g, b) > 40) coloured++;
}
return coloured;
"""


def _fetch(url: str) -> tuple[int, str, bytes]:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return answer.status, answer.headers["Content-Type"], answer.read()


async def test_the_dashboard_shows_components_subscriptions_rates_and_masked_config(
    browser: Any, tmp_path: Path
) -> None:
    require("redis")
    secrets_file = tmp_path / "secrets.json"
    secrets_file.write_text(json.dumps({"db": {"password": PASSWORD}}))
    app = App()
    async with http_server(app.routes()) as app_port, forwarder(6379) as (cache_port, cut_cache):
        grpc_port, actuator_port = free_port(), free_port()
        grpc_config = _grpc_config(app_port, secrets_file, cache_port)
        doc = layotto_config(grpc_config, grpc_port=grpc_port, actuator_port=actuator_port)
        sidecar = Sidecar(layotto_json.load_document(doc, source="<dashboard test>"))
        await sidecar.start()
        try:
            delivery = next(s for s in sidecar.rt.services if isinstance(s, DeliveryService))
            await asyncio.wait_for(delivery.ready.wait(), 10)
            await _calls(f"127.0.0.1:{grpc_port}", sidecar.rt.app_id)
            assert sorted([await asyncio.wait_for(app.events.get(), 10) for _ in range(4)]) == ["1", "2", "3", "drop"]
            await cut_cache()  # `cache` loses its Redis: the dashboard must show it DOWN

            base = f"http://127.0.0.1:{actuator_port}/dashboard"
            await _check_page(browser, base, sidecar.rt.app_id, tmp_path)
            await _check_api(base)
        finally:
            await sidecar.stop()


async def _check_page(driver: Any, base: str, app_id: str, tmp_path: Path) -> None:
    await _in_thread(lambda: driver.get(base))
    loaded = "components,config,overview,rates,subscriptions"

    def everything(d: Any) -> bool:
        return bool(d.find_element("tag name", "body").get_attribute("data-loaded") == loaded)

    await _in_thread(lambda: _wait(driver, everything, "every section loaded"))
    assert await _in_thread(lambda: driver.title) == "Layotto dashboard"
    assert await _in_thread(lambda: driver.find_element("id", "app-id").text) == app_id
    assert await _in_thread(lambda: driver.find_element("id", "status").text) == "UP"

    components = await _in_thread(lambda: _rows(driver, "components"))
    assert sorted(components) == [
        ["pubsub", "mem", "in-memory", "UP"],
        ["secretstores", "vault", "local.file", "UP"],
        ["state", "cache", "redis", "DOWN"],
        ["state", "notes", "in-memory", "UP"],
        ["state", "orders", "redis", "UP"],
    ]
    assert "1 down" in await _in_thread(lambda: driver.find_element("id", "components-summary").text)

    # Deliveries are counted when the app has answered: wait for the counters to reach the page.
    expected = [["mem", TOPIC, "/orders", "subscribed", "3", "0", "1", "0", "0", "0"]]
    await _in_thread(lambda: _wait(driver, lambda d: _rows(d, "subscriptions") == expected, "the counters"))
    summary = await _in_thread(lambda: driver.find_element("id", "subscriptions-summary").text)
    assert summary == "delivering · app healthy"

    # The sampler runs every 2 s: the calls show once a sample after them is taken.
    def charted(d: Any) -> bool:
        return all(
            int(d.find_element("id", f"chart-{name}").get_attribute("data-points") or 0) >= 1
            and float(d.find_element("id", f"chart-{name}").get_attribute("data-max") or 0) > 0
            for name in ("api", "invocations", "deliveries")
        )

    await _in_thread(lambda: _wait(driver, charted, "every chart with a non-zero rate"))
    for name in ("api", "invocations", "deliveries"):
        coloured = await _in_thread(lambda n=name: driver.execute_script(_COLOURED_PIXELS, f"chart-{n}"))
        assert coloured > 50, f"chart-{name} has {coloured} coloured pixels: no series drawn"
    legend = await _in_thread(lambda: driver.find_element("id", "legend-invocations").text)
    assert legend.startswith("invocations ") and "/s" in legend

    config = await _in_thread(lambda: driver.find_element("id", "config").text)
    notes = next(c for c in json.loads(config)["components"] if c["name"] == "notes")
    assert notes["metadata"]["apiToken"] == "******"  # a secret-looking key
    assert notes["metadata"]["note"] == "******"  # the value a secret_ref copies in, whatever its key
    assert notes["metadata"]["backupUrl"] == "https://ops:******@backup.example"
    assert notes["secret_ref"] == [{"store_name": "vault", "key": "db", "sub_key": "password", "inject_as": "note"}]
    masks = await _in_thread(lambda: driver.find_elements("css selector", "#config .mask"))
    assert len(masks) >= 2  # marked on the page
    source = await _in_thread(lambda: driver.page_source)
    for secret in (TOKEN, PASSWORD, URL_PASSWORD):
        assert secret not in source

    png = await _in_thread(lambda: driver.get_screenshot_as_png())
    (tmp_path / "dashboard.png").write_bytes(png)
    viewport = await _in_thread(lambda: driver.execute_script("return [innerWidth, innerHeight]"))
    _check_screenshot(png, tuple(viewport))


def _check_screenshot(png: bytes, viewport: tuple[int, ...]) -> None:
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    assert image.size == viewport and image.size[0] == WIDTH and image.size[1] > HEIGHT // 2, image.size
    colours = image.getcolors(maxcolors=1 << 20) or []
    # A drawn page: many colours (text, badges, chart lines), and no colour covering nearly all of it.
    assert len(colours) > 200, f"only {len(colours)} colours in the screenshot"
    largest = max(count for count, _ in colours)
    assert largest < 0.9 * image.size[0] * image.size[1]
    # The badges' green and red, and the API chart's blue, are on it.
    present = {colour for _, colour in colours}
    for wanted in ((0x1E, 0x9E, 0x57), (0xD9, 0x3F, 0x3F), (0x25, 0x63, 0xEB)):
        assert wanted in present, f"{wanted} not in the screenshot"


async def _check_api(base: str) -> None:
    status, ctype, body = await _in_thread(lambda: _fetch(base))
    assert (status, ctype) == (200, "text/html; charset=utf-8")
    # Self-contained: nothing is loaded from anywhere else (no CDN script, style sheet or font).
    assert b"<canvas" in body and b"<script>" in body
    assert re.search(rb"""(src|href)\s*=\s*(?!["']data:)|@import|url\(""", body) is None
    status, ctype, body = await _in_thread(lambda: _fetch(base + "/api/config"))
    assert (status, ctype) == (200, "application/json")
    for secret in (TOKEN, PASSWORD, URL_PASSWORD):
        assert secret.encode() not in body
    rates = json.loads((await _in_thread(lambda: _fetch(base + "/api/rates")))[2])
    assert rates["interval"] == 2.0 and len(rates["t"]) == len(rates["series"]["api"]) >= 1
    # Each rate is over the interval since the sample before: together they make the 6 invocations.
    starts = [rates["since"], *rates["t"][:-1]]
    spans = [end - start for start, end in zip(starts, rates["t"], strict=True)]
    invoked = sum(rate * span for rate, span in zip(rates["series"]["invocations"], spans, strict=True))
    assert invoked == pytest.approx(6, rel=0.02)
    with pytest.raises(urllib.error.HTTPError) as absent:
        await _in_thread(lambda: _fetch(base + "/api/nothing"))
    assert absent.value.code == 404
