"""Griffe extension for alta's API pages: render Sphinx cross-reference roles as inline code.

alta's docstrings are Google style but refer to other objects with Sphinx roles
(``:class:`~alta.data.Experience```, ``:func:`alta.load_backbone```, ``:meth:`from_pretrained```).
mkdocstrings does not interpret roles, so they would show up verbatim. This extension rewrites
each role to inline code before the docstring is parsed: ``~a.b.C`` becomes ``C`` (Sphinx's
"last component" shorthand), anything else keeps its full dotted name. It only touches the
rendered documentation, never the library.

Used from ``mkdocs.yml`` (``plugins.mkdocstrings.handlers.python.options.extensions``).
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|attr|mod|data|obj|exc|const|ref):`(~?)([^`]+)`")


def _replace(match: re.Match[str]) -> str:
    short, target = match.group(1), match.group(2)
    if short:
        target = target.rsplit(".", 1)[-1]
    return f"`{target}`"


def rewrite_roles(text: str) -> str:
    """``:class:`~alta.data.Experience``` -> ```Experience```; ``:func:`alta.evaluate``` -> ```alta.evaluate```."""
    text = _ROLE.sub(_replace, text)
    # reST literals ``x`` read as Markdown code spans already; nothing else to do.
    return text


class SphinxRoles(griffe.Extension):
    """Rewrite Sphinx roles in every docstring of the loaded objects."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None and ":`" in obj.docstring.value:
            obj.docstring.value = rewrite_roles(obj.docstring.value)
