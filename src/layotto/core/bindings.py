"""The Bindings block: output binding lookup, operation checks, the call."""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum

from layotto.components.bindings.base import InvokeRequest, InvokeResponse, OutputBinding
from layotto.core.problems import Checks, Problem
from layotto.errors import ComponentError

__all__ = ["BindingsCore", "BindingsProblem"]


class BindingsProblem(Enum):
    OPERATION_MISSING = "operation is missing"  # facts: name
    NOT_FOUND = "output binding not found"  # facts: name
    UNSUPPORTED_OPERATION = "operation not supported"  # facts: name, operation, supported
    INVOKE_FAILED = "invoke failed"  # facts: name


class BindingsCore:
    """Output bindings for one API: built with the `Checks` that API makes."""

    def __init__(self, bindings: Mapping[str, OutputBinding], checks: Checks) -> None:
        self._bindings = bindings
        self._checks = checks

    async def invoke(self, name: str, request: InvokeRequest) -> InvokeResponse:
        binding = self._bindings.get(name)
        supported = binding.operations() if binding is not None else []
        if binding is None or request.operation not in supported:
            found = []
            if not request.operation:
                found.append(Problem(BindingsProblem.OPERATION_MISSING, name=name))
            if binding is None:
                found.append(Problem(BindingsProblem.NOT_FOUND, name=name))
            else:
                found.append(
                    Problem(
                        BindingsProblem.UNSUPPORTED_OPERATION,
                        name=name,
                        operation=request.operation,
                        supported=" ".join(supported),
                    )
                )
            self._checks.refuse(found)
            if binding is None:
                raise found[-1]
        try:
            return await binding.invoke(request)
        except ComponentError as exc:
            raise Problem(BindingsProblem.INVOKE_FAILED, exc, name=name) from exc
