"""The console as one ASGI app: the sign-in, the language switch, the static files and the pages,
every answer with the security headers. ``create_app`` mounts it at ``/ui``."""

from __future__ import annotations

from collections.abc import Callable

from starlette.exceptions import HTTPException
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route, Router
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from flowctl.runtime.api.access import Access
from flowctl.runtime.api.view import ServiceView
from flowctl.runtime.console.app import HERE, Console
from flowctl.runtime.console.headers import SecurityHeaders
from flowctl.runtime.console.pages import ROUTES
from flowctl.runtime.console.readside import ReadSide
from flowctl.sources.errors import BadRequest, MethodNotAllowed, NotFound


def console_app(svc: ServiceView, reads: ReadSide, access: Callable[[], Access]) -> ASGIApp:
    """The console over ``svc``: its routes under ``/ui`` (the caller mounts it there), every answer
    with the security headers."""
    console = Console(svc, reads, access)
    routes: list[Route | Mount] = [
        Route("/signin", console.signin_form, methods=["GET"]),
        Route("/signin", console.signin, methods=["POST"]),
        Route("/signout", console.signout, methods=["POST"]),
        Route("/lang", console.switch_language, methods=["GET"]),
        Mount("/static", app=StaticFiles(directory=HERE / "static"), name="static"),
    ]
    for path, page, methods in ROUTES:
        routes.append(Route(path, console.guard(page), methods=list(methods)))

    async def not_found(scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        response = console.error(request, NotFound(f"no console page at {request.url.path}"), None)
        await response(scope, receive, send)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        kind = {404: NotFound, 405: MethodNotAllowed}.get(exc.status_code, BadRequest)
        return console.error(request, kind(f"{request.method} {request.url.path}: {exc.detail}"), None)

    router = Router(routes=routes, default=not_found)
    # errors raised below (a missing static file, a wrong method) are answered here, inside the headers
    return SecurityHeaders(ExceptionMiddleware(router, handlers={HTTPException: http_error}))
