"""The daemon's processes and threads: the service that runs them, ingest (group commits),
workers, leases, the engine process (parent and child), hot reload, the wall clock and logs."""
