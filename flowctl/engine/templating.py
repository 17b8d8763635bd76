"""Moved to ``flowctl.spec.templating`` (the language owns its expressions); kept for imports in flight."""

from flowctl.spec.templating import *  # noqa: F403
from flowctl.spec.templating import TemplateError, compile_expression, compile_template  # noqa: F401
