"""The main job's static HTML report, rebuilt from the files of a real run, loads clean and shows the widgets' views."""
import json, shutil
from urllib.parse import urljoin

from conftest import ROOT

RUN = ROOT / "nbs" / "data" / "runs" / "addition_grpo"


def test_report_of_a_real_run(browser, serve, artifacts, tmp_path):
    from lmtrain.callbacks import History
    from lmtrain.reports import write_report
    from lmtrain.rollouts import load_rollouts
    for png in ("accuracy.png", "curves.png"): shutil.copy(RUN / png, tmp_path / png)
    write_report(tmp_path, json.loads((RUN / "summary.json").read_text()), load_rollouts(RUN / "eval_before.jsonl"),
                 load_rollouts(RUN / "eval_after.jsonl"), history=History.from_json(RUN / "history.json"),
                 rollouts=load_rollouts(RUN / "rollouts.jsonl"))
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    errors = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("requestfailed", lambda r: errors.append(f"request failed: {r.url}"))
    page.goto(urljoin(serve(tmp_path), "report.html"), wait_until="networkidle")
    broken = page.eval_on_selector_all("img", "imgs => imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)")
    assert not errors and not broken, (errors, broken)
    assert page.locator("img[alt='training curves']").count() == 2          # curves.png and the monitor's view
    assert page.locator(".lmtrain-rollouts").count() == 2                      # before/after, and the last step
    assert page.locator(".lmtrain-rollouts span[title^='advantage']").count() > 100
    page.get_by_text("Held-out rollouts, coloured by log-probability").scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts / "report.png"))
    page.close()
