"""W007: an SMS that a symbol alone sends as UCS-2, at twice the price.

GSM-7 carries 160 characters a part, UCS-2 only 70, and one character outside GSM 03.38 switches
the whole text. A text written in Vietnamese with its marks is UCS-2 by choice and is left alone;
a text otherwise written for GSM-7 (``unaccent``, plain Latin) is warned about when a literal
symbol (– … “ ” ₫) or the ``money`` filter's ``₫`` would make it UCS-2. What is inside an
``unaccent`` (filter or ``{% filter unaccent %}`` block) is transliterated and never counts.
Record values are not known here: a name with marks printed without ``unaccent`` is not warned.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field

from anyascii import anyascii
from jinja2 import nodes

from flowctl.spec import model as m
from flowctl.spec import templating
from flowctl.spec.checks._common import action_sites, value_span
from flowctl.spec.checks.expressions import Text, template_texts
from flowctl.spec.dependencies import needs_document
from flowctl.spec.gsm import is_gsm7
from flowctl.spec.issues import Issue, warning
from flowctl.spec.jinja.filters import MONEY_SYMBOL

_MONEY = re.compile(r"\|\s*money\b")


@dataclass(slots=True)
class _Found:
    """What one walk over a template's tree collects (an accumulator, not a value)."""

    symbols: list[str] = field(default_factory=list)  # literal non-letters outside GSM-7
    letters: bool = False  # a literal letter outside GSM-7: the text is UCS-2 by its words
    money: str = ""  # the non-GSM symbol a money filter writes, "" when none does


def check_sms_encoding(bundle: m.Bundle) -> Iterator[Issue]:
    """W007: an SMS text that a symbol alone (or money's ₫) makes UCS-2."""
    for text, needs in _sms_texts(bundle):
        found = _scan(text.source)
        if found is None or found.letters or not (found.symbols or found.money):
            continue
        if found.money:
            call = _MONEY.search(text.source)
            yield warning(
                "W007",
                f"{text.what} is sent as UCS-2 (70 characters a part, not 160) only because the money filter "
                f"writes '{found.money}'",
                text.place(bundle.root, call.start() if call else None),
                "write money(symbol='VND') or end the expression with | unaccent (which writes ₫ as d) "
                "to keep the SMS in GSM-7",
                needs=needs,
            )
            continue
        chars = list(dict.fromkeys(found.symbols))
        swaps = ", ".join(f"'{anyascii(c)}' for '{c}'" for c in chars[:5])
        yield warning(
            "W007",
            f"{text.what} is sent as UCS-2 (70 characters a part, not 160) only because of "
            + ", ".join(f"'{c}' (U+{ord(c):04X})" for c in chars[:5]),
            text.place(bundle.root, text.source.find(chars[0])),
            f"write {swaps}, or wrap the text in {{% filter unaccent %}}…{{% endfilter %}}, to keep the SMS in GSM-7",
            needs=needs,
        )


def _sms_texts(bundle: m.Bundle) -> Iterator[tuple[Text, tuple[str, ...]]]:
    """Each text sent as an SMS, once: send_sms templates and inline texts, zalo fallbacks."""
    seen: set[str] = set()

    def template(name: str) -> Iterator[tuple[Text, tuple[str, ...]]]:
        doc = bundle.templates.get(name)
        if doc is None or name in seen or not doc.text:
            return
        seen.add(name)
        for text in template_texts(bundle, doc):
            if text.source is doc.text and not text.what.startswith("the subject"):
                yield text, tuple(needs_document("Template", name))
                return

    for site in action_sites(bundle):
        action = site.action
        if action.type != "send_sms":
            continue
        doc = bundle.templates.get(action.template) if action.template else None
        name = action.channel or (doc.channel if doc and doc.channel in bundle.channels else "sms")
        channel = bundle.channels.get(name)
        if channel is not None and channel.type == "zalo_zns":
            continue  # a ZNS template, not an SMS; its fallback is read below
        if action.template:
            yield from template(action.template)
        elif action.text:
            where = value_span(action.where, "text")
            yield Text(action.text, False, where, site.object, f"the text of {site.owner}"), ()
    for channel in bundle.channels.values():
        if channel.fallback is not None and channel.fallback.template:
            yield from template(channel.fallback.template)


def _scan(source: str) -> _Found | None:
    try:
        tree = templating.template_tree(source)
    except templating.TemplateError:
        return None  # E051 says why
    found = _Found()
    _walk(tree, found, unaccented=False)
    return found


def _walk(node: nodes.Node, found: _Found, *, unaccented: bool) -> None:
    if isinstance(node, nodes.TemplateData):
        for char in "" if unaccented else node.data:
            if is_gsm7(char):
                continue
            if unicodedata.category(char)[0] in "LM":
                found.letters = True
            else:
                found.symbols.append(char)
        return
    if isinstance(node, nodes.Filter) and node.name == "unaccent":
        if node.node is not None:
            _walk(node.node, found, unaccented=True)
        return
    if isinstance(node, nodes.FilterBlock) and _is_unaccent(node.filter):
        for child in node.body:
            _walk(child, found, unaccented=True)
        return
    if isinstance(node, nodes.Filter) and node.name == "money" and not unaccented and not found.money:
        symbol = _money_symbol(node)
        if symbol and not all(map(is_gsm7, symbol)):
            found.money = symbol
    for child in node.iter_child_nodes():
        _walk(child, found, unaccented=unaccented)


def _is_unaccent(node: nodes.Filter) -> bool:
    """Whether a ``{% filter a | b %}`` chain applies unaccent last, or anywhere after the text."""
    current: nodes.Node | None = node
    while isinstance(current, nodes.Filter):
        if current.name == "unaccent":
            return True
        current = current.node
    return False


def _money_symbol(node: nodes.Filter) -> str | None:
    """The symbol a money filter writes, when it is written literally (else None: unknown)."""
    if node.dyn_args is not None or node.dyn_kwargs is not None:
        return None
    for keyword in node.kwargs:
        if keyword.key == "symbol":
            return str(keyword.value.value) if isinstance(keyword.value, nodes.Const) else None
    if node.args:
        first = node.args[0]
        return str(first.value) if isinstance(first, nodes.Const) else None
    return MONEY_SYMBOL
