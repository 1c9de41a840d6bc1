"""Griffe extension for alta's API pages: read a singular ``Example:`` heading as ``Examples:``.

Griffe's Google-style parser knows the section ``Examples:`` (it turns ``>>>`` lines into
``pycon`` code blocks and trims doctest flags) but reads a singular ``Example:`` heading as an
admonition whose body is Markdown, where ``>>> x`` is a blockquote nested three deep: the
example then renders as a collapsed quote with code, doctest flags and output run together.
alta's docstrings use ``Examples:``; this extension keeps a stray singular heading followed by
``>>>`` lines from breaking the rendered page. It only touches the documentation, never the
library. ``tools/check_docs_render.py`` checks the result in a browser.

Used from ``mkdocs.yml`` (``plugins.mkdocstrings.handlers.python.options.extensions``).
"""

from __future__ import annotations

import re
from typing import Any

import griffe

# "Example:" alone on its line, then (after blank lines) a line starting with ">>>".
_SINGULAR = re.compile(r"^(?P<indent>[ \t]*)Example:[ \t]*\n(?=(?:[ \t]*\n)*[ \t]*>>>)", re.MULTILINE)


def pluralise_example_headings(text: str) -> str:
    """``Example:`` followed by ``>>>`` lines -> ``Examples:`` (other text unchanged)."""
    return _SINGULAR.sub(lambda m: f"{m.group('indent')}Examples:\n", text)


class ExampleSections(griffe.Extension):
    """Rewrite singular ``Example:`` headings of doctest examples in every loaded docstring."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None and "Example:" in obj.docstring.value:
            obj.docstring.value = pluralise_example_headings(obj.docstring.value)
