"""Every page of the built docs site loads in a real browser without console errors, broken links or missing images."""
from urllib.parse import urljoin, urldefrag

import pytest

from conftest import ROOT

SITE = ROOT / "docs" / "_build" / "html"
PAGES = sorted(p.relative_to(SITE).as_posix() for p in SITE.glob("*.html")) if SITE.exists() else []


def test_site_was_built():
    assert (SITE / "index.html").exists(), "build the site first: python scripts/build_docs.py"
    lessons = [p for p in PAGES if p not in {"genindex.html", "search.html"}]
    assert len(lessons) >= 3, lessons


def check_page(page, url):
    errors = []
    page.on("console", lambda m: errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: errors.append(f"request failed: {r.url} {r.failure}"))
    resp = page.goto(url, wait_until="networkidle")
    assert resp is not None and resp.ok, f"{url}: HTTP {resp and resp.status}"
    broken_images = page.eval_on_selector_all(
        "img", "imgs => imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)")
    links = page.eval_on_selector_all("a[href]", "as => as.map(a => a.href)")
    return errors, broken_images, links


@pytest.mark.parametrize("name", PAGES)
def test_page_loads_clean(browser, serve, name):
    base = serve(SITE)
    page = browser.new_page()
    errors, broken_images, links = check_page(page, urljoin(base, name))
    assert not errors, f"{name}: {errors}"
    assert not broken_images, f"{name}: images that did not load: {broken_images}"
    internal = {urldefrag(l)[0] for l in links if l.startswith(base)}
    broken = [l for l in internal if not (SITE / l[len(base):]).exists() and not l.endswith("/")]
    assert not broken, f"{name}: broken links {broken}"
    page.close()


def test_math_renders(browser, serve, artifacts):
    "MathJax comes from the site itself (offline) and typesets the lessons' equations."
    base = serve(SITE)
    page = browser.new_page()
    page.goto(urljoin(base, "index.html"), wait_until="networkidle")
    page.screenshot(path=str(artifacts / "docs_index.png"), full_page=True)
    scripts = page.eval_on_selector_all("script[src]", "s => s.map(x => x.src)")
    assert not [s for s in scripts if s.startswith("http") and not s.startswith(base)], scripts
    with_math = [p for p in PAGES if "\\(" in (SITE / p).read_text() or "\\[" in (SITE / p).read_text()]
    if with_math:
        page.goto(urljoin(base, with_math[0]), wait_until="networkidle")
        page.wait_for_selector("mjx-container", timeout=15000)
    page.close()


def test_widget_static_views(browser, serve, artifacts):
    "The widgets lesson shows each widget's static view: rollouts with coloured tokens, the inspector, real runs."
    if "widgets.html" not in PAGES: pytest.fail("widgets.html was not built")
    base = serve(SITE)
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    page.goto(urljoin(base, "widgets.html"), wait_until="networkidle")
    views = page.locator(".lmtrain-rollouts")
    assert views.count() >= 3, "RolloutViewer static views (demo, real run, before/after)"
    tokens = page.locator(".lmtrain-rollouts span[title^='logprob'], .lmtrain-rollouts span[title^='advantage']")
    assert tokens.count() > 50
    assert page.locator(".lmtrain-inspector").count() >= 1
    page.get_by_text("Before and after training, on the same").last.scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts / "docs_widgets.png"))
    page.close()
