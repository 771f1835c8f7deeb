"""Actuator: health and info over HTTP/1.1, as upstream's actuator listener."""
