"""Sources of record changes from outside: webhook deliveries mapped to changes, and SQL tables
polled into changes (``kind: Source``). Adapters: they know neither HTTP frameworks nor the daemon's
threads; the runtime hands them requests and an ingest."""
