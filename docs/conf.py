"""Sphinx configuration: the Markdown pages are MyST, the API page is autodoc.

Build (``make docs`` does this in the venv, warnings are errors)::

    sphinx-build -W --keep-going -b html docs docs/_build/html
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import trio_uring  # noqa: E402 - after the path is set

project = "trio_uring"
author = "the trio_uring developers"
copyright = "the trio_uring developers"
release = version = trio_uring.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
]

source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]

# MyST: "[below](#accept)" links to headings, ``` {directive} ``` fences
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence", "deflist"]

# autodoc: signatures as written, type hints in the description
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_format = "short"
autodoc_preserve_defaults = True

html_theme = "alabaster"
html_static_path = ["_static"]
html_title = f"trio_uring {release}"
html_theme_options = {
    "description": "a trio IO manager on Linux io_uring",
    "fixed_sidebar": True,
}


def _check_api_page(app: object, docname: str, source: list[str]) -> None:
    """Every name in ``trio_uring.__all__`` is documented on the API page:
    a public name added without it is a warning, which fails the build."""
    if docname != "api":
        return
    from sphinx.util import logging

    logger = logging.getLogger(__name__)
    for name in trio_uring.__all__:
        if f"trio_uring.{name}" not in source[0]:
            logger.warning("docs/api.md does not document trio_uring.%s (it is in trio_uring.__all__)", name)


def setup(app: Any) -> None:
    app.connect("source-read", _check_api_page)
