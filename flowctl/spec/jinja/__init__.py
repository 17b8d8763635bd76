"""flowctl's Jinja2: the filters, the bounded sandbox and the static analysis behind
``flowctl.spec.templating`` (the module the rest of flowctl imports)."""
