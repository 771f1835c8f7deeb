"""Errors raised by components and the runtime.

Components know nothing of gRPC: they raise these, and the API layer maps each class to
the status code and message that upstream Layotto uses for that API.
"""

from __future__ import annotations


class LayottoError(Exception):
    """Base of every error layotto raises on purpose."""


class ConfigError(LayottoError):
    """The configuration is invalid. `path` names where (a JSON path, a YAML file, ...)."""

    def __init__(self, message: str, path: str = "") -> None:
        self.path = path
        super().__init__(f"{path}: {message}" if path else message)


class ComponentError(LayottoError):
    """A component failed to do what was asked (the generic case)."""


class InvalidArgumentError(ComponentError):
    """The request is malformed for this component (bad etag, bad option, ...)."""


class NotFoundError(ComponentError):
    """The thing asked for does not exist."""


class AlreadyExistsError(ComponentError):
    """The thing to create exists already."""


class ETagMismatchError(ComponentError):
    """Optimistic concurrency failed: the stored version is not the one the caller read."""


class ETagInvalidError(InvalidArgumentError):
    """The etag is not of this store's format."""


class UnsupportedError(ComponentError):
    """The component does not have this optional power: an operation of a feature it does not
    declare (see `layotto.components.base.Feature`), or one its backend gives no meaning to.
    `feature` names the missing feature when there is one."""

    def __init__(self, message: str, feature: str | None = None) -> None:
        super().__init__(message)
        self.feature = feature


class BackendUnavailableError(ComponentError):
    """The backend server cannot be reached. The component keeps trying to reconnect."""


class BackendTimeoutError(ComponentError):
    """The backend did not answer in time."""
