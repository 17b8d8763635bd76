"""The read side of the running daemon, for the read API and the console: one module per page or
resource (runs, outbox, board, timeline, care, deployments, health, graph) and the ``Reads``
facade over them."""

from flowctl.runtime.reads.facade import Reads

__all__ = ["Reads"]
