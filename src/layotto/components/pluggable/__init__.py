"""Pluggable components: building-block components served by another process on a Unix socket.

Two protocols, as upstream: Dapr's `dapr.proto.components.v1` (state, pub/sub, input and output
bindings, secret stores; sockets in `DAPR_COMPONENTS_SOCKETS_FOLDER`) and Layotto's
`spec.proto.pluggable.v1` (hello; sockets in `LAYOTTO_COMPONENTS_SOCKETS_FOLDER`).
`discovery` finds the sockets and what each serves; each block's adapter here is a component of
that block's interface whose backend is the component process, so every API serves it as it
serves a built-in one. See docs/extending.md.
"""
