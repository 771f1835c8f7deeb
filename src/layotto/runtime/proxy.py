"""How the runtime puts a concern of its own (a resiliency policy, counting the calls in
progress) between the block cores and a component, and stays out of sight otherwise."""

from __future__ import annotations

from typing import Any


class ComponentProxy:
    """A component as the block cores see it through one of the runtime's concerns.

    The methods `_around` returns a replacement for are the proxy's (made on first use, then
    found in the proxy's own __dict__, so __getattr__ runs once per method); every other
    attribute is the component's own, read and written through. `isinstance` sees the
    component's class: its `__class__`, so proxies over proxies still read as the component.
    """

    _proxied: object

    def __init__(self, target: object) -> None:
        object.__setattr__(self, "_proxied", target)

    @property  # type: ignore[misc]  # isinstance() consults __class__: the component's kind, not ours
    def __class__(self) -> type:
        cls: type = object.__getattribute__(self, "_proxied").__class__
        return cls

    def __getattr__(self, name: str) -> Any:
        value = getattr(object.__getattribute__(self, "_proxied"), name)
        replaced = self._around(name, value)
        if replaced is None:
            return value
        object.__setattr__(self, name, replaced)
        return replaced

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(object.__getattribute__(self, "_proxied"), name, value)

    def _around(self, name: str, value: Any) -> Any | None:
        """What the proxy serves for the component's attribute `value`, or None for the value itself."""
        raise NotImplementedError
