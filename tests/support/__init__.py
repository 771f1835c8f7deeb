"""Test support: real-service checks, sidecar processes, config builders."""
