"""The care scheduler: the tick that finds due care occurrences and hands them to the engine."""
