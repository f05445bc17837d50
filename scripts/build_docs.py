"""Build the docs site offline: nbdev's notebook processing, then Sphinx + myst-nb with warnings as errors.

nbdev's own site generator needs Quarto, which cannot be installed offline. nbdev's processing step
(`nbdev.serve.proc_nbs`) does not: it writes `_proc/` with hidden cells removed and `show_doc` rendered.
Its notebooks are Quarto-flavoured, so `adapt` turns each into a plain notebook that myst-nb reads.

    python scripts/build_docs.py            # -> docs/_build/html/index.html
"""
import argparse, json, re, shutil, subprocess, sys
from pathlib import Path

import yaml
import nbdev.serve

ROOT = Path(__file__).resolve().parent.parent
DOCS, SRC, OUT = ROOT / "docs", ROOT / "docs" / "_src", ROOT / "docs" / "_build" / "html"
QUARTO_ATTRS = re.compile(r"\{(?:target|fig-align|width|height|\.[\w-]+)[^}\n]*\}")
DIRECTIVE = re.compile(r"^\s*#\s*\|.*$\n?", re.M)


def front_matter(cell) -> dict:
    "The YAML front matter that nbdev puts in the first raw cell of a processed notebook."
    text = "".join(cell["source"]).strip().strip("-")
    return yaml.safe_load(text) or {}


def title_cell(meta: dict) -> dict:
    md = f"# {meta.get('title', 'Untitled')}\n"
    if meta.get("description"): md += f"\n> {meta['description']}\n"
    return {"cell_type": "markdown", "metadata": {}, "source": md}


def adapt_cell(cell) -> dict | None:
    "A Quarto-flavoured cell as a plain one: no `#|` lines, no Quarto attributes, hidden input as a tag."
    src = "".join(cell["source"])
    if cell["cell_type"] == "markdown":
        src = QUARTO_ATTRS.sub("", src)
        return {"cell_type": "markdown", "metadata": {}, "source": src}
    if cell["cell_type"] != "code": return None
    tags = ["remove-input"] if re.search(r"#\s*\|\s*echo:\s*false", src) else []
    src = DIRECTIVE.sub("", src).strip("\n")
    if not src and not cell.get("outputs"): return None
    return {"cell_type": "code", "metadata": {"tags": tags} if tags else {}, "execution_count": None,
            "outputs": [adapt_output(o) for o in cell.get("outputs", [])], "source": src}


def adapt_output(out: dict) -> dict:
    "`show_doc` output opens with a Markdown rule, which docutils refuses inside an output: drop it."
    md = out.get("data", {}).get("text/markdown")
    if md is not None:
        text = "".join(md) if isinstance(md, list) else md
        out = {**out, "data": {**out["data"], "text/markdown": re.sub(r"\A\s*---\s*\n", "", text)}}
    return out


def adapt(proc_nb: Path) -> tuple[str, dict, str]:
    "Write the plain notebook for one processed notebook; return its page name, notebook and title."
    nb = json.loads(proc_nb.read_text())
    cells, meta = nb["cells"], {}
    if cells and cells[0]["cell_type"] == "raw":
        meta, cells = front_matter(cells[0]), cells[1:]
    page = Path(meta.get("output-file", proc_nb.stem)).stem
    new_cells = [title_cell(meta)] + [c for c in map(adapt_cell, cells) if c is not None]
    for i, c in enumerate(new_cells): c["id"] = f"cell-{i}"
    kernel = {"name": "python3", "display_name": "Python 3", "language": "python"}
    plain = {"cells": new_cells, "metadata": {"kernelspec": kernel, "language_info": {"name": "python"}},
             "nbformat": 4, "nbformat_minor": 5}
    return page, plain, meta.get("title", page)


def api_reference(pages: set[str]) -> str:
    "A page listing every exported name, by module, linked to the lesson that documents it."
    from lmtrain._modidx import d
    lines = ["# API reference", "", "Every name that the notebooks export, by module, linked to its lesson.", ""]
    for module, syms in sorted(d["syms"].items()):
        if not syms: continue
        lines += [f"## `{module}`", ""]
        for name, (doc_link, _src) in sorted(syms.items()):
            page = doc_link.split("#")[0].rsplit("/", 1)[-1].removesuffix(".html")
            lines.append(f"- [`{name}`]({page}.ipynb)" if page in pages else f"- `{name}`")
        lines.append("")
    return "\n".join(lines)


def toc(pages: list[tuple[str, str]]) -> str:
    entries = "\n".join(p for p, _ in pages if p != "index")
    return f"\n\n```{{toctree}}\n:maxdepth: 1\n:caption: Lessons\n:hidden:\n\n{entries}\napi_reference\n```\n"


def copy_mathjax(static: Path):
    import mathjax  # the PyPI package django-static-mathjax: MathJax 3 as static files
    es5 = Path(mathjax.__path__[0]) / "static" / "mathjax" / "es5"
    shutil.copytree(es5, static / "mathjax", dirs_exist_ok=True)


def build(warnings_as_errors=True, n_workers=2, skip_file_re='^[_.]') -> Path:
    if (ROOT / '_proc').exists(): shutil.rmtree(ROOT / '_proc')
    nbdev.serve.proc_nbs(n_workers=n_workers, force=True, skip_file_re=skip_file_re)
    if SRC.exists(): shutil.rmtree(SRC)
    SRC.mkdir(parents=True)
    (SRC / "conf.py").write_text((DOCS / "conf.py").read_text())
    shutil.copytree(DOCS / "_static", SRC / "_static")
    copy_mathjax(SRC / "_static")
    pages = []
    for proc_nb in sorted((ROOT / "_proc").glob("*.ipynb")):
        page, plain, title = adapt(proc_nb)
        pages.append((page, title))
        if page == "index": plain["cells"].append({"cell_type": "markdown", "id": "toc", "metadata": {}, "source": ""})
        (SRC / f"{page}.ipynb").write_text(json.dumps(plain, indent=1))
    index = SRC / "index.ipynb"
    nb = json.loads(index.read_text())
    nb["cells"][-1]["source"] = toc(pages)
    index.write_text(json.dumps(nb, indent=1))
    (SRC / "api_reference.md").write_text(api_reference({p for p, _ in pages}))
    cmd = [sys.executable, "-m", "sphinx", "-b", "html", "-q", str(SRC), str(OUT)]
    if warnings_as_errors: cmd[3:3] = ["-W", "--keep-going"]
    subprocess.run(cmd, check=True)
    return OUT / "index.html"


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-strict", action="store_true", help="do not treat warnings as errors")
    ap.add_argument("--skip", default="^[_.]", help="skip notebooks whose file name matches this regex")
    args = ap.parse_args()
    print(build(warnings_as_errors=not args.no_strict, skip_file_re=args.skip))
