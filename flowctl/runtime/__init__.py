"""The daemon, in rooms by role: ``api/`` (the HTTP app), ``delivery/`` (the outbox and sending
policies), ``care/`` (the care scheduler's tick) and ``daemon/`` (the processes and threads that
run them: service, ingest, workers, leases, the engine process, reloads, clock and logs).
``compose`` is the one place that builds and wires them, from one ``settings.Settings`` value."""
