"""MkDocs hook: one results page per committed benchmark output (benchmarks/results/*.json|csv).

Each file in benchmarks/results/ (format: benchmarks/results/README.md; written by
benchmarks.common.write_result) becomes the page results/benchmarks/<name>.md with its tables, the
command that produced it and its provenance (date, commit, machine), plus its figures (PNG files
under docs/). The pages are added to the navigation under "Results" > "Benchmark outputs", and
the marker `<!-- generated: results-list -->` on a page is replaced by a list of them.

A file that cannot be read, lacks a required key, or names a figure that is not under docs/ is
logged as a warning, so `mkdocs build --strict` fails on it.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from pathlib import Path

from mkdocs.structure.files import File

log = logging.getLogger("mkdocs.hooks.results")
ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
PAGES = "results/benchmarks"  # where the generated pages go, under docs/
SECTION = "Benchmark outputs"  # their navigation section, inside "Results"
MARKER = "<!-- generated: results-list -->"
REQUIRED = ("benchmark", "command", "date", "machine", "rows")

_results: list[dict] = []


def cell(value) -> str:
    """A value as a Markdown table cell: floats with 4 significant digits, pipes and newlines escaped."""
    if value is None:
        return ""
    if isinstance(value, float):
        text = f"{value:,.0f}" if abs(value) >= 1e5 else f"{value:.4g}"
    elif isinstance(value, (list, tuple)):
        text = ", ".join(str(v) for v in value)
    elif isinstance(value, dict):
        text = json.dumps(value, ensure_ascii=False)
    else:
        text = str(value)
    return (text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").replace("<", "&lt;")
            .replace("[", "\\[").replace("]", "\\]").replace("*", "\\*"))


def table(rows: list[dict]) -> str:
    """Rows (dicts) as a Markdown table; columns in first-seen order."""
    if not rows:
        return "*(no rows)*\n"
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    lines = ["| " + " | ".join(cell(c) for c in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def read_csv(path: Path) -> dict:
    """A CSV result: leading '# key: value' lines (benchmark, command, date, commit, notes, and
    machine facts as 'machine.cpu: ...'), then a header row and the rows."""
    meta: dict = {"machine": {}}
    body = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#") and not body:
            key, _, value = line[1:].partition(":")
            key, value = key.strip(), value.strip()
            if key.startswith("machine."):
                meta["machine"][key.removeprefix("machine.")] = value
            elif key:
                meta[key] = value
        else:
            body.append(line)
    meta["rows"] = list(csv.DictReader(io.StringIO("\n".join(body))))
    return meta


def read(path: Path) -> dict | None:
    """One results file as a dict (None, with a warning, when it cannot be used)."""
    try:
        result = json.loads(path.read_text(encoding="utf-8")) if path.suffix == ".json" else read_csv(path)
    except (OSError, ValueError, csv.Error) as e:
        log.warning("benchmarks/results/%s: cannot be read: %s", path.name, e)
        return None
    missing = [k for k in REQUIRED if k not in result]
    if not isinstance(result, dict) or missing:
        log.warning("benchmarks/results/%s: missing %s (format: benchmarks/results/README.md)", path.name,
                    ", ".join(missing) or "everything")
        return None
    result["_file"] = path.name
    result["_page"] = f"{PAGES}/{path.stem}.md"
    return result


def provenance(result: dict) -> str:
    """The admonition saying who wrote the numbers, when, on what."""
    m = result.get("machine") or {}
    facts = []
    if m.get("cpu"):
        facts.append(f"CPU {m['cpu']}" + (f" ({m['cpus']} cores)" if m.get("cpus") else ""))
    if m.get("threads"):
        facts.append(f"{m['threads']} torch threads")
    if m.get("gpu"):
        facts.append(f"GPU {m['gpu']}")
    for lib in ("torch", "transformers", "python"):
        if m.get(lib):
            facts.append(f"{lib} {m[lib]}")
    commit = f", commit `{result['commit']}`" if result.get("commit") else ""
    return (f'!!! info "Provenance"\n    Measured on {result["date"]}{commit} by the command below, '
            f"on: {', '.join(facts) or 'an unrecorded machine'}. Raw file: "
            f"`benchmarks/results/{result['_file']}` (written by `benchmarks.common.write_result`; "
            f"this page is generated from it when the site is built).\n")


def figure(path: str, page: str) -> str:
    """A figure given relative to the repository root, linked from the page (it must be under docs/)."""
    target = Path(path)
    if target.parts[:1] != ("docs",) or not (ROOT / target).is_file():
        log.warning("%s: figure %s is not a file under docs/", page, path)
        return ""
    depth = len(Path(page).parent.parts)
    return f"![{target.stem}]({'../' * depth}{Path(*target.parts[1:]).as_posix()})\n"


def render(result: dict) -> str:
    """The page's Markdown."""
    title = result.get("title") or result["benchmark"]
    parts = [f"# {title}\n", provenance(result), "## Command\n", f"```bash\n{result['command']}\n```\n",
             "## Results\n", table(result["rows"])]
    for name, rows in (result.get("tables") or {}).items():
        parts += [f"### {name}\n", table(rows)]
    if result.get("notes"):
        parts += ["## Notes\n", str(result["notes"]).strip() + "\n"]
    figures = [figure(f, result["_page"]) for f in result.get("figures") or []]
    if any(figures):
        parts += ["## Figures\n", *figures]
    return "\n".join(parts)


def _add_to_nav(nav: list, entries: list) -> None:
    """Put the generated pages under 'Results' > SECTION (a top-level SECTION without 'Results')."""
    for item in nav:
        if isinstance(item, dict) and isinstance(item.get("Results"), list):
            item["Results"].append({SECTION: entries})
            return
    nav.append({SECTION: entries})


def on_config(config):
    _results.clear()
    files = sorted(p for p in RESULTS.glob("*") if p.suffix in (".json", ".csv"))
    _results.extend(r for r in map(read, files) if r is not None)
    if _results and config.nav is not None:
        _add_to_nav(config.nav, [{r.get("title") or r["benchmark"]: r["_page"]} for r in _results])
    return config


def on_files(files, config):
    for result in _results:
        files.append(File.generated(config, result["_page"], content=render(result)))
    return files


def on_page_markdown(markdown, page, config, files):
    if MARKER not in markdown:
        return markdown
    if not _results:
        listing = ("*No benchmark output is committed yet: `benchmarks/results/` holds only its README. "
                   "The first full run of a benchmark that calls `write_result` adds one.*")
    else:
        base = Path(page.file.src_uri).parent
        rows = []
        for r in _results:
            link = Path(r["_page"]).relative_to(base).as_posix() if Path(r["_page"]).is_relative_to(base) \
                else "/".join([".."] * len(base.parts) + [r["_page"]])
            rows.append(f"| [{r.get('title') or r['benchmark']}]({link}) | `{r['_file']}` | {cell(r['date'])} |")
        listing = "| page | file | measured |\n|---|---|---|\n" + "\n".join(rows)
    return markdown.replace(MARKER, listing)
