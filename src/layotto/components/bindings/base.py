"""What an output binding is: a named backend the app calls with an operation, data and metadata."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field

from layotto.components.base import Component

# Dapr's common operation names (bindings.OperationKind).
CREATE = "create"
GET = "get"
DELETE = "delete"
LIST = "list"


@dataclass
class InvokeRequest:
    operation: str
    data: bytes = b""
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass
class InvokeResponse:
    data: bytes = b""
    metadata: dict[str, str] = field(default_factory=dict)


class OutputBinding(Component):
    """An output binding. `invoke` is only called with an operation listed by `operations()`;
    the API layer checks this first, as upstream does, so components need not."""

    @abstractmethod
    def operations(self) -> list[str]:
        """The operations this binding supports, in a stable order (shown in error messages)."""

    @abstractmethod
    async def invoke(self, request: InvokeRequest) -> InvokeResponse:
        """Run one operation. Raise InvalidArgumentError for a bad request,
        BackendUnavailableError when the backend cannot be reached, ComponentError otherwise."""


def string_metadata(metadata: Mapping[str, object]) -> dict[str, str]:
    """Reply metadata is map<string,string> on the wire."""
    return {str(k): str(v) for k, v in metadata.items()}
