"""Python client for the Layotto runtime API.

``Client`` (blocking) and ``AsyncClient`` (asyncio) talk to a Layotto sidecar over gRPC;
``layotto_sdk.app.App`` serves the callbacks a sidecar makes to the application
(pub/sub deliveries, service invocations).
"""

from layotto_sdk._async_client import (
    AsyncClient,
    AsyncConfigurationSubscription,
    AsyncLockContext,
    AsyncSubscription,
)
from layotto_sdk._client import Client, ConfigurationSubscription, LockContext, Subscription
from layotto_sdk._core import USE_CLIENT_DEFAULT
from layotto_sdk._errors import LayottoError, LockNotAcquired
from layotto_sdk._models import (
    ActiveSubscription,
    BindingResponse,
    BulkPublishFailure,
    BulkStateItem,
    Concurrency,
    ConfigurationItem,
    Consistency,
    Delete,
    FileInfo,
    FileList,
    FileMeta,
    HelloResponse,
    HttpVerb,
    InvokeResponse,
    Lease,
    LockStatus,
    RegisteredComponent,
    SidecarMetadata,
    State,
    StateItem,
    TopicEvent,
    TopicEventStatus,
    Upsert,
)

__version__ = "0.1.0"

__all__ = [
    "USE_CLIENT_DEFAULT",
    "ActiveSubscription",
    "AsyncClient",
    "AsyncConfigurationSubscription",
    "AsyncLockContext",
    "AsyncSubscription",
    "BindingResponse",
    "BulkPublishFailure",
    "BulkStateItem",
    "Client",
    "Concurrency",
    "ConfigurationItem",
    "ConfigurationSubscription",
    "Consistency",
    "Delete",
    "FileInfo",
    "FileList",
    "FileMeta",
    "HelloResponse",
    "HttpVerb",
    "InvokeResponse",
    "LayottoError",
    "Lease",
    "LockContext",
    "LockNotAcquired",
    "LockStatus",
    "RegisteredComponent",
    "SidecarMetadata",
    "State",
    "StateItem",
    "Subscription",
    "TopicEvent",
    "TopicEventStatus",
    "Upsert",
    "__version__",
]
