"""The daemon's HTTP API: routes and handlers, request parsing, the OpenAPI document built from the
routes, write deadlines, read-your-own-write, limits on request heads, and the Prometheus metrics
the API serves."""
