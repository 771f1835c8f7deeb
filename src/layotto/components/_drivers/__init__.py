"""Backend drivers: the client code the components of several blocks share, one module per backend.

A component imports the driver of its own backend only, so a sidecar loads the client
libraries of the backends it is configured with and no others (the embedded SQLite
default never loads asyncpg or aiomysql). Importing this package loads nothing.
"""
