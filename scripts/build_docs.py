"""Build the docs site offline: nbdev's notebook processing, then Sphinx + myst-nb with warnings as errors.

nbdev's own site generator needs Quarto, which cannot be installed offline. nbdev's processing step
(`nbdev.serve.proc_nbs`) does not: it writes `_proc/` with hidden cells removed and `show_doc` rendered.
Its notebooks are Quarto-flavoured, so `adapt` turns each into a plain notebook that myst-nb reads.

The pages show fresh outputs: `execute` first runs every lesson top to bottom, as `nbdev_test` does, and
keeps the stored outputs only of the cells that the test flags skip (`slow`, `notest`, `gpu`: the real-model
runs, whose outputs were saved when they last ran). nbdev's own execution of `show_doc` cells is then off.

    python scripts/build_docs.py            # -> docs/_build/html/index.html
"""
import argparse, json, os, re, shutil, subprocess, sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml
import nbdev.serve

ROOT = Path(__file__).resolve().parent.parent
DOCS, SRC, OUT = ROOT / "docs", ROOT / "docs" / "_src", ROOT / "docs" / "_build" / "html"
QUARTO_ATTRS = re.compile(r"\{(?:target|fig-align|width|height|\.[\w-]+)[^}\n]*\}")
DIRECTIVE = re.compile(r"^\s*#\s*\|.*$\n?", re.M)
EXEC = ROOT / "docs" / "_exec"


def skipped(cell, flags: set[str]) -> bool:
    "Cells that `nbdev_test` would not run: markdown, the export cell, `eval: false`, and flagged cells."
    if cell.cell_type != "code" or "nbdev_export" in cell.source: return True
    directives = [l.split("#|", 1)[1].strip() for l in cell.source.splitlines() if l.lstrip().startswith("#|")]
    return any(d.replace(" ", "") == "eval:false" or d in flags for d in directives)


def execute_one(src: str) -> str:
    "Run one notebook from its own folder (as `nbdev_test` does) and write it, outputs included, to `EXEC`."
    from execnb.nbio import read_nb, write_nb
    from execnb.shell import CaptureShell
    from fastcore.xtras import working_directory
    from nbdev.config import get_config
    src = Path(src)
    flags = set(get_config().get("tst_flags", "").split())
    nb = read_nb(src)
    os.environ["IN_TEST"] = "1"
    shell = CaptureShell(src)
    with working_directory(src.parent):
        try: shell.run_all(nb, exc_stop=True, preproc=lambda c: skipped(c, flags))
        except Exception as e: raise RuntimeError(f"{src.name} failed:\n{shell.prettytb(fname=src)}") from e
    # nbdev would run the `show_doc` cells again in a kernel of its own; they already have their output.
    nb.cells.insert(0, dict(cell_type="raw", metadata={}, source="---\nskip_showdoc: true\n---"))
    write_nb(nb, EXEC / src.name)
    return src.name


def execute(n_workers: int, skip_file_re: str) -> Path:
    "Execute every notebook into `EXEC`, with the other files of `nbs/` beside them."
    nbs = ROOT / "nbs"
    if EXEC.exists(): shutil.rmtree(EXEC)
    shutil.copytree(nbs, EXEC, ignore=shutil.ignore_patterns("*.ipynb", ".*"))
    todo = [str(p) for p in sorted(nbs.glob("*.ipynb")) if not re.search(skip_file_re, p.name)]
    def run(src):  # one fresh process per notebook, as a kernel would be
        res = subprocess.run([sys.executable, __file__, "--execute-one", src], capture_output=True, text=True)
        if res.returncode: raise RuntimeError(f"executing {src} failed:\n{res.stdout[-3000:]}{res.stderr[-6000:]}")
        print("executed", Path(src).name, flush=True)
    with ThreadPoolExecutor(n_workers) as pool: list(pool.map(run, todo))
    return EXEC


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


GUIDES = ("security",)   # pages that are not lessons: listed apart in the sidebar, after the lessons


def toc(pages: list[tuple[str, str]]) -> str:
    def tree(caption, entries): return f"\n\n```{{toctree}}\n:maxdepth: 1\n:caption: {caption}\n:hidden:\n\n" + "\n".join(entries) + "\n```\n"
    lessons = [p for p, _ in pages if p != "index" and p not in GUIDES]
    guides = [p for p in GUIDES if p in {name for name, _ in pages}]
    return tree("Lessons", lessons) + tree("Guides and reference", guides + ["api_reference"])


def copy_mathjax(static: Path):
    import mathjax  # the PyPI package django-static-mathjax: MathJax 3 as static files
    es5 = Path(mathjax.__path__[0]) / "static" / "mathjax" / "es5"
    shutil.copytree(es5, static / "mathjax", dirs_exist_ok=True)


def build(warnings_as_errors=True, n_workers=2, skip_file_re='^[_.]') -> Path:
    if (ROOT / '_proc').exists(): shutil.rmtree(ROOT / '_proc')
    nbdev.serve.proc_nbs(path=str(execute(n_workers, skip_file_re)), n_workers=n_workers, force=True,
                         skip_file_re=skip_file_re)
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
    ap.add_argument("--execute-one", metavar="NOTEBOOK", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.execute_one: sys.exit(print(execute_one(args.execute_one)))
    print(build(warnings_as_errors=not args.no_strict, skip_file_re=args.skip))
