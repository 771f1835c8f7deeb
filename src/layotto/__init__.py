"""layotto: an application runtime (sidecar) wire-compatible with mosn/layotto."""

__version__ = "0.1.0"
