"""The daemon's HTTP API (v1) as one Starlette app: the declared routes, error answers for what no
route matches, and a fast path for the hot route.

The app only needs a :class:`~flowctl.runtime.api.view.ServiceView`; ``create_app(svc)`` reads
``svc.bundle`` on every request, so a hot reload takes effect on the next request. The routes, and
the OpenAPI document served at ``/openapi.json``, come from ``api.handlers``.
"""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route

from flowctl.runtime.api.core import Handler
from flowctl.runtime.api.deadlines import COMMIT_TIMEOUT
from flowctl.runtime.api.handlers import Api
from flowctl.runtime.api.openapi import Endpoint, Role
from flowctl.runtime.api.routes import routes
from flowctl.runtime.api.view import ServiceView
from flowctl.runtime.console.headers import SecurityHeaders
from flowctl.runtime.console.site import console_app
from flowctl.runtime.reads import Reads
from flowctl.sources.errors import BadRequest, MethodNotAllowed, NotFound


def roles_of(endpoint: Endpoint) -> dict[str, Role | None]:
    """The least role of each method of ``endpoint`` (upper case), HEAD as GET: Starlette answers
    HEAD with the GET handler."""
    roles = {method.upper(): operation.role for method, operation in endpoint.operations.items()}
    if "GET" in roles:
        roles.setdefault("HEAD", roles["GET"])
    return roles


def create_app(svc: ServiceView, *, commit_timeout: float = COMMIT_TIMEOUT, ui: bool = True) -> Starlette:
    """The daemon's ASGI app over ``svc``: every route checks the role its operation declares for
    the request's method (``ApiCore.guard``) before its handler runs. With ``ui``, the console at
    ``/ui/`` too (it checks its own sessions)."""
    api = Api(svc, commit_timeout=commit_timeout)
    served: list[Route | Mount] = []
    for endpoint in routes.endpoints:
        handler: Handler = api.guard(roles_of(endpoint), getattr(api, endpoint.handler))
        served.append(Route(endpoint.path, api.instrument(endpoint.path, handler), methods=endpoint.methods))
    records = served[0]  # /v1/records/{object}/{id}, the first route declared: the fast path's
    assert isinstance(records, Route) and records.path == "/v1/records/{object}/{id}"

    if ui:
        served.append(Route("/ui", SecurityHeaders(RedirectResponse("/ui/", status_code=308)), methods=["GET"]))
        served.append(Mount("/ui", app=console_app(svc, Reads(svc), api.access)))

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        kind = {404: NotFound, 405: MethodNotAllowed}.get(exc.status_code, BadRequest)
        response = JSONResponse(kind(exc.detail).body(), status_code=exc.status_code, headers=exc.headers)
        api.requests.inc(route="unmatched", status=str(exc.status_code))
        return response

    app = _App(routes=served, exception_handlers={HTTPException: http_error})
    app.record_endpoint = records.endpoint
    app.state.api = api
    return app


class _App(Starlette):
    """Starlette, with the hot route (``/v1/records/{object}/{id}``: put, patch, get, delete)
    going straight to its handler: the middleware and router layers cost as much as the handler
    itself. Every other request, and every error shape, is Starlette's as before."""

    record_endpoint: Handler | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        endpoint = self.record_endpoint
        if endpoint is not None and scope["type"] == "http" and scope["method"] in _FAST_METHODS:
            path: str = scope["path"]
            if path.startswith(_RECORDS) and not scope.get("root_path"):
                object, slash, record_id = path[len(_RECORDS) :].partition("/")
                if object and slash and record_id and "/" not in record_id:
                    scope["app"] = self
                    scope["path_params"] = {"object": object, "id": record_id}
                    response = await endpoint(Request(scope, receive, send))
                    await response(scope, receive, send)
                    return
        await super().__call__(scope, receive, send)


_RECORDS = "/v1/records/"

_FAST_METHODS = frozenset({"GET", "PUT", "PATCH", "DELETE"})
