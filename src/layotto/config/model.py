"""The one internal configuration model. Loaders translate their formats into it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from layotto.config.resiliency import ResiliencySpec

if TYPE_CHECKING:  # loaded with TLS only: config/tls.py brings gRPC and cryptography
    from layotto.config.tls import PeerTls, ServerTls

DEFAULT_GRPC_ADDRESS = "127.0.0.1:34904"
DEFAULT_ACTUATOR_ADDRESS = "127.0.0.1:34999"
DEFAULT_CALLBACK_HOST = "127.0.0.1"
#: Where Dapr's HTTP API listens for a Dapr app's sidecar (daprd's default port).
DEFAULT_DAPR_HTTP_ADDRESS = "127.0.0.1:3500"

#: Building blocks, named as Dapr names them in a component's `spec.type` prefix.
#: The order is upstream Layotto's initialisation order.
BLOCKS: tuple[str, ...] = (
    "secretstores",
    "configuration",
    "custom",
    "hello",
    "state",
    "rpc",
    "nameresolution",
    "bindings",
    "pubsub",
    "file",
    "oss",
    "lock",
    "sequencer",
    "cryption",
    "email",
    "sms",
    "phone",
)


@dataclass(frozen=True)
class ComponentRef:
    """Upstream's `component_ref`: the config store and the secret store (component names, ""
    for none) the runtime hands to the component before its init."""

    config_store: str = ""
    secret_store: str = ""


@dataclass
class ComponentSpec:
    """One configured component: which block, its name, its backend type and metadata."""

    block: str
    name: str
    type: str
    metadata: dict[str, Any] = field(default_factory=dict)
    #: Block-specific settings beside metadata (sequencer `biggerThan`, `secret_ref`, ...).
    extras: dict[str, Any] = field(default_factory=dict)
    #: Where it was declared, for error messages: "config.json: $.servers[0]...state.redis".
    source: str = ""
    #: A custom component's kind (the key under `custom_component`); "" in every other block.
    kind: str = ""
    #: The stores its `component_ref` names; None without one.
    component_ref: ComponentRef | None = None


@dataclass
class AppConfig:
    app_id: str = ""
    grpc_callback_port: int = 0
    grpc_callback_host: str = DEFAULT_CALLBACK_HOST
    #: Optional HTTP port of the app, for service invocation over HTTP.
    http_port: int = 0
    #: Which callback API the app serves on grpc_callback_port: "layotto"
    #: (spec.proto.runtime.v1.AppCallback), "dapr" (dapr.proto.runtime.v1.AppCallback), or ""
    #: to ask both and use the one the app implements.
    callback_api: str = ""
    #: daprd's app health checks; None: the app counts as healthy.
    health_check: AppHealthCheck | None = None


@dataclass
class AppHealthCheck:
    """How the sidecar probes the app (daprd's `--app-health-*` flags and defaults)."""

    #: The HTTP path an HTTP app answers probes on.
    path: str = "/healthz"
    #: Seconds between probes.
    interval: float = 5.0
    #: Seconds a probe may take.
    timeout: float = 0.5
    #: Failed probes in a row after which the app is unhealthy.
    threshold: int = 3


@dataclass(frozen=True)
class BulkSubscribeSpec:
    """Dapr's `bulkSubscribe` of a subscription: events go to the app in batches of up to
    `max_messages_count`, each sent once it is full or `max_await_duration_ms` after its first
    event came; 0 means daprd's default (100 events, 1000 ms)."""

    enabled: bool = False
    max_messages_count: int = 0
    max_await_duration_ms: int = 0


@dataclass
class SubscriptionSpec:
    """A declared subscription (a Dapr `Subscription` resource, dapr.io/v1alpha1 or v2alpha1)."""

    name: str
    pubsub_name: str
    topic: str
    #: (CEL match, path) rules, tried in order; v1alpha1 has none.
    rules: list[tuple[str, str]] = field(default_factory=list)
    #: The app's handler for events no rule matches (v1alpha1's `route`).
    default_route: str = ""
    dead_letter_topic: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    source: str = ""
    #: `spec.bulkSubscribe`; None when the resource has none.
    bulk_subscribe: BulkSubscribeSpec | None = None


#: What a function may take when its entry sets no `limits` (beyond upstream, which has none).
DEFAULT_WASM_TIMEOUT = 3.0
DEFAULT_WASM_MEMORY = 128 * 1024 * 1024


@dataclass
class WasmFunctionSpec:
    """One WASM function (an entry of a `Layotto` stream filter's config, or an install request)."""

    #: The entry's `name` (its key when it has none); the function's id is what its module says.
    name: str
    path: str
    engine: str = "wasmtime"
    #: Instances serving calls at once (upstream's `instance_num`, the CPU count when unset).
    instance_num: int = 1
    root_context_id: int = 1
    #: The entry's string values: upstream's plugin configuration, the guest's buffer 7.
    plugin_config: dict[str, str] = field(default_factory=dict)
    #: `vm_config` as upstream hands it to the guest (buffer 6): Go field names, values as text.
    vm_config: dict[str, str] = field(default_factory=dict)
    #: Seconds one call may run, host calls included.
    timeout: float = DEFAULT_WASM_TIMEOUT
    #: Bytes of linear memory an instance may have.
    memory_limit: int = DEFAULT_WASM_MEMORY
    source: str = ""


@dataclass
class WasmConfig:
    """Upstream's WASM functions: the listeners with a `Layotto` stream filter serve the
    functions, the one with a `wasm_filter` serves /wasm/install, /wasm/uninstall, /wasm/update."""

    addresses: list[str] = field(default_factory=list)
    functions: list[WasmFunctionSpec] = field(default_factory=list)
    admin_address: str | None = None
    source: str = ""

    @property
    def enabled(self) -> bool:
        return bool(self.addresses or self.admin_address)


@dataclass
class RuntimeConfig:
    grpc_address: str = DEFAULT_GRPC_ADDRESS
    #: "tcp" or "unix"; with "unix", grpc_address is a socket path.
    grpc_network: str = "tcp"
    actuator_address: str | None = DEFAULT_ACTUATOR_ADDRESS
    #: "host:port" of Dapr's HTTP API (daprd's /v1.0/...); None serves none.
    dapr_http_address: str | None = None
    #: More "host:port" addresses of the gRPC APIs and of Dapr's HTTP API (daprd's
    #: --dapr-listen-addresses with several hosts), on the first address's port.
    grpc_extra_addresses: list[str] = field(default_factory=list)
    dapr_http_extra_addresses: list[str] = field(default_factory=list)
    #: TLS of the gRPC APIs' and Dapr's HTTP API's listeners; None: plaintext (docs/operations.md#tls).
    tls: ServerTls | None = None
    #: daprd's internal gRPC listener: calls other sidecars forward (InvokeService only), and the
    #: address this sidecar advertises to name resolution; None: they come to the API port.
    internal_grpc_address: str | None = None
    #: TLS of sidecar to sidecar invocation (the channels to other sidecars and the internal
    #: listener); None: plaintext.
    peer_tls: PeerTls | None = None
    #: `--access-log`: one `layotto.access` record per API call (gRPC and Dapr HTTP).
    access_log: bool = False
    app: AppConfig = field(default_factory=AppConfig)
    components: list[ComponentSpec] = field(default_factory=list)
    #: Raw stream filter configs of the gRPC listener (flowControlFilter, grpc_metric, ...).
    stream_filters: list[dict[str, Any]] = field(default_factory=list)
    tracing: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    #: When set, every API call must carry this token (header `dapr-api-token`).
    api_token: str | None = None
    #: Largest gRPC message accepted or sent, in bytes.
    max_message_bytes: int = 4 * 1024 * 1024
    #: Seconds SIGTERM waits for in-flight calls before closing components.
    shutdown_grace: float = 10.0
    #: Warnings gathered while loading (unknown keys, blocks not built yet).
    warnings: list[str] = field(default_factory=list)
    #: Subscriptions declared beside the app's own (Dapr `Subscription` resources).
    subscriptions: list[SubscriptionSpec] = field(default_factory=list)
    #: WASM functions and their listeners (none unless a listener has a `Layotto` or `wasm_filter` filter).
    wasm: WasmConfig = field(default_factory=WasmConfig)
    #: Dapr's resiliency policies and their targets (docs/resiliency.md).
    resiliency: ResiliencySpec = field(default_factory=ResiliencySpec)
    source: str = ""
    #: The Dapr resources folder (or file) the components of `--resources-path` came from; its
    #: component files are watched and a changed one reloaded (docs/extending.md).
    resources_path: str = ""
    #: `--watch-config`: reload a changed component entry of the Layotto JSON file (`source`) too.
    watch_config: bool = False

    def components_of(self, block: str) -> list[ComponentSpec]:
        return [c for c in self.components if c.block == block]
