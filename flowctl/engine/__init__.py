"""The deterministic core: given config, state, one input and the time, decide what happens."""
