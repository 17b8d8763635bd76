"""The console: the running system in a browser at ``/ui/``, server-rendered from this package's
templates and static files over the read side (``Reads``).

Modules by role: ``site`` builds the ASGI app, ``app`` (who a request is for, rendering, sign-in),
``pages`` (one handler a page), ``session`` (sessions and CSRF), ``i18n`` (English and Vietnamese),
``headers`` (the security headers), ``layout`` (diagrams as SVG), ``formats`` (numbers and times),
``screenshots`` (the pictures under docs/console/).
"""
