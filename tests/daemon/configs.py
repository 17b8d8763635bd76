"""Configuration texts the daemon tests start from, so that each test writes only what it is about.

``deal_config`` is the smallest config a daemon runs: UTC and a ``deal`` with a required title.
``real_channels`` adds the ``email`` channel on an SMTP server and the ``sms`` channel on an HTTP
sink. Both end where a test appends its own documents (templates, pipelines, flows).
"""

from __future__ import annotations

SMS_BODY = '{to: "{{ to }}", text: "{{ text }}"}'


def deal_config(fields: str = "", *, spec: str = "{timezone: UTC}", name: str = "main", then: str = "") -> str:
    """A ``Config`` named ``name`` with ``spec`` and the ``deal`` type: a required ``title`` and
    ``fields`` (YAML lines indented four spaces). ``then`` is appended as the next documents."""
    text = f"""\
apiVersion: flowctl/v1
kind: Config
metadata: {{name: {name}}}
spec: {spec}
---
apiVersion: flowctl/v1
kind: ObjectType
metadata: {{name: deal}}
spec:
  fields:
    title: {{type: string, required: true}}
{fields}"""
    return f"{text}---\n{then}" if then else text


def http_channel(name: str, url: str, extra: str = "") -> str:
    """A ``Channel`` ``name`` that POSTs ``{to, text}`` to ``url``; ``extra``: more spec lines."""
    return f"""\
apiVersion: flowctl/v1
kind: Channel
metadata: {{name: {name}}}
spec:
  type: http
  url: "{url}"
  body: {SMS_BODY}
{extra}"""


def real_channels(smtp_port: int, sink: str, extra_fields: str = "") -> str:
    """UTC, a ``deal`` (title, email, phone and ``extra_fields``, YAML lines indented four spaces),
    the ``email`` channel on an SMTP server and the ``sms`` channel on an HTTP sink. Append the
    templates and the pipeline of the test."""
    email = f"""\
apiVersion: flowctl/v1
kind: Channel
metadata: {{name: email}}
spec: {{type: smtp, host: 127.0.0.1, port: {smtp_port}, security: none, from: shop@example.com}}
---
"""
    fields = "    email: email\n    phone: phone\n" + extra_fields
    return deal_config(fields, then=email + http_channel("sms", f"{sink}/sms") + "---\n")


def mail_template(name: str, subject: str, text: str) -> str:
    """An email ``Template`` ``name`` with a ``subject`` and a plain ``text`` (Jinja allowed)."""
    return f"""\
apiVersion: flowctl/v1
kind: Template
metadata: {{name: {name}}}
spec: {{channel: email, subject: "{subject}", text: "{text}"}}
"""


def sales_pipeline(rules: str, *, stages: str = "", final: str = "done") -> str:
    """The ``sales`` pipeline of ``deal``: stage ``new`` with ``rules`` (YAML lines indented eight
    spaces), then ``stages`` (YAML list items indented four), then the final stage ``final``."""
    return f"""\
apiVersion: flowctl/v1
kind: Pipeline
metadata: {{name: sales}}
spec:
  object: deal
  stages:
    - id: new
      rules:
{rules}{stages}    - id: {final}
      final: success
"""


#: The email the outage and slow-gateway tests send, then the next document.
THANKS_MAIL = mail_template("thanks-mail", "Don {{ record.title }}", "Xin chao {{ record.title }}") + "---\n"
