"""MkDocs hook: the signature and docstring of an object read at run time, for the few that
mkdocstrings cannot reach.

Griffe (mkdocstrings' static reader) lets a submodule win over a package member of the same name
(mkdocstrings/griffe#222): `autoprompt.search`, the function defined in autoprompt/__init__.py, is
hidden by the submodule autoprompt/search.py. Python does the opposite, so the marker
`<!-- generated: runtime-doc autoprompt.search -->` on a page is replaced by what `import autoprompt`
gives: a heading with the anchor `autoprompt.search`, the signature and the docstring.

`<!-- generated: api-if-installed PACKAGE -->` becomes the mkdocstrings block of PACKAGE when it is
installed (a package still being added), else a line saying it is not, so the page builds either way.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import re

from mkdocs.exceptions import PluginError

MARKER = re.compile(r"<!-- generated: runtime-doc ([\w.]+) -->")
OPTIONAL = re.compile(r"<!-- generated: api-if-installed (\w+) -->")
BLOCK = "::: {name}\n    options:\n      show_root_heading: false\n      heading_level: 3\n"


def render(path: str, level: int = 3) -> str:
    module, _, name = path.rpartition(".")
    try:
        obj = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise PluginError(f"runtime-doc {path}: {e}") from e
    try:
        sig = inspect.signature(obj, eval_str=True)
    except (NameError, TypeError):
        sig = inspect.signature(obj)
    signature = f"{path}{sig}"
    if len(signature) > 90:  # one parameter per line, as mkdocstrings' separate signatures
        params = [str(p) for p in sig.parameters.values()]
        star = next((i for i, p in enumerate(sig.parameters.values()) if p.kind is p.KEYWORD_ONLY), None)
        if star is not None and not any(p.kind is p.VAR_POSITIONAL for p in sig.parameters.values()):
            params.insert(star, "*")
        ret = "" if sig.return_annotation is inspect.Signature.empty else \
            f" -> {inspect.formatannotation(sig.return_annotation)}"
        signature = f"{path}(\n" + "".join(f"    {p},\n" for p in params) + f"){ret}"
    doc = inspect.getdoc(obj) or ""
    return (f"{'#' * level} `{path}` {{ #{path} data-toc-label='{name}' }}\n\n"
            f"```python\n{signature}\n```\n\n{doc}\n")


def optional_block(name: str) -> str:
    if importlib.util.find_spec(name) is None:
        return f"*`{name}` is not installed in the environment that built this page.*\n"
    return BLOCK.format(name=name)


def on_page_markdown(markdown, page, config, files):
    markdown = OPTIONAL.sub(lambda m: optional_block(m.group(1)), markdown)
    return MARKER.sub(lambda m: render(m.group(1)), markdown)
