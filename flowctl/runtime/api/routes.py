"""The API's one table of routes, which every handler module declares on (``@routes.endpoint``).

``api.handlers`` declares first, so ``/v1/records/{object}/{id}`` is the first route: the app's
fast path relies on it. ``api.reading`` (the read endpoints) declares after it.
"""

from __future__ import annotations

from flowctl.runtime.api.openapi import Routes

routes = Routes()
