"""The console's ASGI app, mounted at ``/ui`` by ``create_app``: who the request is for (a session,
or the open read-only console on loopback), rendering (Jinja2, autoescape on for every template),
the sign-in, sign-out and language switch, and the error pages. The pages themselves are in
``console.pages``; every answer gets the security headers of ``console.headers``.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qsl, quote, urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from flowctl.runtime.api.access import Access
from flowctl.runtime.api.view import ServiceView
from flowctl.runtime.console import i18n
from flowctl.runtime.console.formats import FILTERS
from flowctl.runtime.console.readside import ReadSide
from flowctl.runtime.console.session import (
    ANONYMOUS,
    COOKIE,
    CSRF_COOKIE,
    PATH,
    Sessions,
    Who,
    identify,
    same_token,
)
from flowctl.sources.errors import Forbidden, PayloadTooLarge, RequestError

log = logging.getLogger("flowctl.console")

HERE = Path(__file__).parent
MAX_FORM = 16 * 1024  # bytes of a form post: a token, a CSRF value and a path
T = TypeVar("T")
Page = Callable[["Console", Request, Who], Awaitable[Response]]


class SignIn(Exception):
    """The request needs a session it does not have: the page answers with the sign-in form."""


def loopback(host: str) -> bool:
    """The client's address is this machine's (127.0.0.0/8, ::1)."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def safe_next(value: str) -> str:
    """Where to go after sign-in or a language switch: a console path, never another site."""
    if value.startswith(PATH + "/") and not value.startswith("//") and "\\" not in value:
        return value
    return PATH + "/"


class Console:
    """The console bound to one service: its reads, the API's current access and the sessions."""

    def __init__(self, svc: ServiceView, reads: ReadSide, access: Callable[[], Access]) -> None:
        self.svc = svc
        self.reads = reads
        self.access = access
        self.sessions = Sessions()
        self.env = Environment(
            loader=FileSystemLoader(HERE / "templates"),
            autoescape=select_autoescape(default=True, default_for_string=True),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters.update(FILTERS)

    async def read(self, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """A Reads call in a thread (store I/O must not block the event loop)."""
        return await run_in_threadpool(call, *args, **kwargs)

    # ------------------------------------------------------------------ who

    def who(self, request: Request) -> Who:
        """The principal of ``request``; raises ``Forbidden`` (the open console, off loopback) or
        :class:`SignIn` (no live session)."""
        access = self.access()
        if access.open:
            client = request.client.host if request.client else ""
            if not loopback(client):
                raise Forbidden("with no token configured, the console answers only on this machine (loopback)")
            return ANONYMOUS
        session = self.sessions.get(request.cookies.get(COOKIE, ""))
        if session is None:
            raise SignIn()
        return session.who

    def csrf(self, request: Request) -> str:
        session = self.sessions.get(request.cookies.get(COOKIE, ""))
        return session.csrf if session else ""

    async def form(self, request: Request) -> dict[str, str]:
        """A posted ``application/x-www-form-urlencoded`` form, bounded in size."""
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_FORM:
                raise PayloadTooLarge(f"a console form is at most {MAX_FORM} bytes")
        return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))

    async def checked_form(self, request: Request, who: Who) -> dict[str, str]:
        """The form of a POST that acts: only signed in, and with the session's CSRF token."""
        if not who.signed_in:
            raise Forbidden("the console is read-only when no token is configured")
        form = await self.form(request)
        if not same_token(form.get("csrf", ""), self.csrf(request)):
            raise Forbidden("the form's CSRF token does not match the session; reload the page and try again")
        return form

    # ------------------------------------------------------------------ render

    def language(self, request: Request) -> str:
        return i18n.choose(request.cookies.get(i18n.COOKIE, ""), request.headers.get("accept-language", ""))

    def render(
        self, request: Request, template: str, who: Who | None, *, status: int = 200, **values: Any
    ) -> HTMLResponse:
        lang = self.language(request)
        kept = [(k, v) for k, v in request.query_params.multi_items() if k != "fragment"]
        here = request.url.path + (f"?{urlencode(kept)}" if kept else "")  # this page, whole
        context = {
            "t": i18n.translator(lang),
            "lang": lang,
            "languages": i18n.LANGUAGES,
            "who": who,
            "csrf": self.csrf(request),
            "here": here,
            "here_quoted": quote(here, safe=""),
            "root": PATH,
            **values,
        }
        html = self.env.get_template(template).render(context)
        return HTMLResponse(html, status_code=status, headers={"Cache-Control": "no-store"})

    def error(self, request: Request, exc: RequestError, who: Who | None) -> HTMLResponse:
        return self.render(request, "error.html", who, status=exc.status, problem=exc.message, code=exc.code)

    def guard(self, page: Page) -> Callable[[Request], Awaitable[Response]]:
        """``page`` for a principal: the sign-in form when there is none, error pages for errors."""

        async def endpoint(request: Request) -> Response:
            who: Who | None = None
            try:
                who = self.who(request)
                return await page(self, request, who)
            except SignIn:
                target = quote(request.url.path + (f"?{request.url.query}" if request.url.query else ""), safe="")
                return RedirectResponse(f"{PATH}/signin?next={target}", status_code=303)
            except RequestError as exc:
                return self.error(request, exc, who)

        return endpoint

    # ------------------------------------------------------------------ sign-in

    async def signin_form(self, request: Request) -> Response:
        access = self.access()
        if access.open:
            return RedirectResponse(PATH + "/", status_code=303)
        return self._signin_page(request, "", status=200)

    def _signin_page(self, request: Request, problem: str, status: int) -> Response:
        token = request.cookies.get(CSRF_COOKIE) or Sessions.new_csrf()
        response = self.render(
            request,
            "signin.html",
            None,
            status=status,
            signin_csrf=token,
            problem=problem,
            next=safe_next(request.query_params.get("next", "")),
        )
        self.set_cookie(request, response, CSRF_COOKIE, token, max_age=3600)
        return response

    async def signin(self, request: Request) -> Response:
        try:
            return await self._signin(request)
        except RequestError as exc:
            return self.error(request, exc, None)

    async def _signin(self, request: Request) -> Response:
        access = self.access()
        if access.open:
            return self.error(request, Forbidden("no token is configured: there is nothing to sign in with"), None)
        form = await self.form(request)
        if not same_token(form.get("csrf", ""), request.cookies.get(CSRF_COOKIE, "")):
            return self.error(request, Forbidden("the sign-in form expired; load it again"), None)
        who = identify(access, form.get("token", ""))
        if who is None:
            t = i18n.translator(self.language(request))
            return self._signin_page(request, t("bad_token"), status=401)
        session_id, _ = self.sessions.open(who)
        log.info("console: %s signed in (%s)", who.name, who.role)
        response = RedirectResponse(safe_next(form.get("next", "")), status_code=303)
        self.set_cookie(request, response, COOKIE, session_id, max_age=int(self.sessions.lifetime))
        response.delete_cookie(CSRF_COOKIE, path=PATH)
        return response

    async def signout(self, request: Request) -> Response:
        try:
            return await self._signout(request)
        except RequestError as exc:
            return self.error(request, exc, None)

    async def _signout(self, request: Request) -> Response:
        if self.access().open:
            raise Forbidden("no token is configured: there is no session to end")
        session_id = request.cookies.get(COOKIE, "")
        session = self.sessions.get(session_id)
        if session is not None:
            form = await self.form(request)
            if not same_token(form.get("csrf", ""), session.csrf):
                return self.error(request, Forbidden("the form's CSRF token does not match the session"), session.who)
            self.sessions.close(session_id)
        response = RedirectResponse(PATH + "/signin", status_code=303)
        response.delete_cookie(COOKIE, path=PATH)
        return response

    async def switch_language(self, request: Request) -> Response:
        lang = request.query_params.get("to", "")
        response = RedirectResponse(safe_next(request.query_params.get("next", "")), status_code=303)
        if lang in i18n.LANGUAGES:
            self.set_cookie(request, response, i18n.COOKIE, lang, max_age=365 * 86400, http_only=False)
        return response

    @staticmethod
    def set_cookie(
        request: Request, response: Response, name: str, value: str, *, max_age: int, http_only: bool = True
    ) -> None:
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path=PATH,
            httponly=http_only,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
