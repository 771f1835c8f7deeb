"""The building blocks' logic, once: each module here validates a block's requests, lays out
its keys, calls its components and raises `Problem`s. The APIs (Layotto gRPC, Dapr gRPC, and
every later entry point) are adapters over these cores; each one turns a problem into its own
status code and wording from a table (see `layotto.core.problems`)."""
