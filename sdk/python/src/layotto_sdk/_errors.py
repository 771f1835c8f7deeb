"""Exceptions raised by the SDK."""

from __future__ import annotations

from typing import Any

import grpc


class LayottoError(Exception):
    """A call to the sidecar failed.

    ``code`` is the gRPC status code (a :class:`grpc.StatusCode`) and ``message`` the
    status message exactly as the sidecar sent it, so it can be matched against
    Layotto's documented errors, e.g.::

        try:
            client.get_state("nope", "k")
        except LayottoError as exc:
            assert exc.code == grpc.StatusCode.INVALID_ARGUMENT
            assert exc.message == "state store nope is not found"
    """

    code: grpc.StatusCode
    message: str
    trailers: tuple[tuple[str, str | bytes], ...]

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        trailers: tuple[tuple[str, str | bytes], ...] = (),
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.trailers = trailers

    @property
    def details(self) -> str:
        """The gRPC name of ``message`` (the status "details" string)."""
        return self.message

    def __str__(self) -> str:
        return f"{self.code.name}: {self.message}"

    def __repr__(self) -> str:
        return f"LayottoError({self.code.name}, {self.message!r})"


class LockNotAcquired(Exception):  # noqa: N818 - the name says what happened, as the brief of the API asks
    """``Client.lock()`` could not acquire the lock: another owner holds it.

    Raised at once when no ``wait`` was given, or when ``wait`` seconds passed without
    the lock becoming free.
    """

    def __init__(self, store: str, resource: str, waited: float) -> None:
        how = f"after waiting {waited:.3g}s" if waited > 0 else "it is held by another owner"
        super().__init__(f"lock {resource!r} in lock store {store!r} was not acquired: {how}")
        self.store = store
        self.resource = resource
        self.waited = waited


class Drop(Exception):  # noqa: N818 - reads as the outcome it asks for: `raise Drop()`
    """Raise (or return) from a subscriber to drop the event: it will not be redelivered.

    Importable as ``layotto_sdk.app.Drop``.
    """


def from_rpc_error(exc: grpc.RpcError) -> LayottoError:
    """Turn a gRPC error (sync or asyncio) into a :class:`LayottoError`."""
    call: Any = exc
    code = call.code() if callable(getattr(call, "code", None)) else None
    details = call.details() if callable(getattr(call, "details", None)) else None
    trailers_fn = getattr(call, "trailing_metadata", None)
    trailers: Any = trailers_fn() if callable(trailers_fn) else None
    return LayottoError(
        code if isinstance(code, grpc.StatusCode) else grpc.StatusCode.UNKNOWN,
        details if isinstance(details, str) else str(exc),
        tuple((str(k), v) for k, v in (trailers or ())),
    )
