"""Python client for the Layotto runtime API."""

__version__ = "0.1.0"
