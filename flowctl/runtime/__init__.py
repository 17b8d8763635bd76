"""The imperative shell: workers, timers, HTTP, delivery and wiring around the engine."""
