"""The widgets lesson opens in a real JupyterLab, runs, and its RolloutViewer renders and responds to clicks."""
import json, os, signal, socket, subprocess, sys, time, urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import expect

from conftest import ROOT

LESSON = "nbs/17_widgets.ipynb"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); return s.getsockname()[1]


def write_setting(root: Path, plugin: str, values: dict):
    path = root / f"{plugin}.jupyterlab-settings"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(values))


@pytest.fixture(scope="module")
def jupyterlab(tmp_path_factory):
    "A JupyterLab server on loopback over the repository, no token, no network calls of its own."
    port, home = free_port(), tmp_path_factory.mktemp("jhome")
    settings = home / "lab-settings"
    # Clean notebooks carry no kernelspec: start the default kernel without asking, and fetch no news.
    # Windowing off: every cell stays in the page, so the test can find each widget.
    write_setting(settings, "@jupyterlab/notebook-extension/tracker", {"autoStartDefaultKernel": True, "windowingMode": "none"})
    # Running the lesson must not write its outputs back into the repository's notebook.
    write_setting(settings, "@jupyterlab/docmanager-extension/plugin", {"autosave": False})
    write_setting(settings, "@jupyterlab/apputils-extension/notification", {"fetchNews": "false", "checkForUpdates": False})
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(home / "config"), "JUPYTER_DATA_DIR": str(home / "data"),
           "JUPYTER_RUNTIME_DIR": str(home / "runtime"), "IPYTHONDIR": str(home / "ipython"),
           "JUPYTERLAB_SETTINGS_DIR": str(settings)}
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
           f"--ServerApp.root_dir={ROOT}", "--IdentityProvider.token=", "--ServerApp.password=",
           "--ServerApp.disable_check_xsrf=True", "--LabApp.news_url=None",
           "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate", "--ServerApp.open_browser=False", "--allow-root"]
    log = open(home / "lab.log", "w")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/"
    for _ in range(120):
        try:
            urllib.request.urlopen(url + "api/status", timeout=1); break
        except Exception: time.sleep(0.5)
    else:
        os.killpg(proc.pid, signal.SIGKILL); pytest.fail("JupyterLab did not start: " + (home / "lab.log").read_text()[-2000:])
    yield url
    stop_server(proc, url)


def stop_server(proc, url, grace=30):
    """Shut the kernels down over the REST API, then SIGTERM the server; one still busy after `grace` seconds
    is killed with its whole process group (kernels included), so a slow shutdown never fails the test run."""
    try:
        for k in json.load(urllib.request.urlopen(url + "api/kernels", timeout=5)):
            urllib.request.urlopen(urllib.request.Request(url + f"api/kernels/{k['id']}", method="DELETE"), timeout=10)
    except OSError: pass  # the server may already be going down; the signals below still stop it
    proc.terminate()
    try: proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL); proc.wait(timeout=10)


def test_rollout_viewer_in_jupyterlab(browser, jupyterlab, artifacts):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(jupyterlab + "lab/tree/" + LESSON, wait_until="domcontentloaded")
    page.wait_for_selector(".jp-Notebook", timeout=60000)
    kernel = page.locator(".jp-StatusBar-TextItem[title^='Change kernel']")
    expect(kernel).to_contain_text("Idle", timeout=60000)    # "No Kernel | Initializing" until the kernel is up
    expect(kernel).not_to_contain_text("No Kernel")
    # The idle indicator can show before the kernel is connected, and a run requested then is lost: retry
    # until the first cell has run.
    for attempt in range(4):
        page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
        page.locator(".lm-Menu-itemLabel:text-is('Run All Cells')").click()
        try:
            page.locator(".jp-InputPrompt:text-matches('\\[(\\d+|\\*)\\]')").first.wait_for(state="attached", timeout=15000)
            break
        except Exception:
            page.keyboard.press("Escape")
    viewer = page.locator(".lmtrain-viewer").nth(1)  # the real run's training rollouts
    try:  # JupyterLab renders off-screen cells lazily: wait for the widget to exist, then bring it into view
        viewer.wait_for(state="attached", timeout=120000)
        viewer.scroll_into_view_if_needed()
    except Exception:
        page.screenshot(path=str(artifacts / "jupyterlab_failure.png"))
        errors_shown = page.locator("[data-mime-type='application/vnd.jupyter.stderr']").all_inner_texts()
        raise AssertionError(f"no RolloutViewer rendered; error outputs: {errors_shown[:3]}")
    count = viewer.locator(".lmtrain-viewer-count")
    total = int(count.inner_text().split(" of ")[1].split()[0])
    assert total > 0
    # Filter to one step: fewer rollouts listed, and each one shown comes from that step.
    step = viewer.locator(".widget-dropdown:has(label:text-is('step')) select")
    options = step.locator("option").all_inner_texts()
    assert options[0] == "all" and len(options) >= 2
    step.select_option(label=options[1])
    detail = viewer.locator(".lmtrain-viewer-detail")
    expect(detail).to_contain_text(f"step {options[1]} ·")
    shown = int(count.inner_text().split()[0])
    assert 0 < shown < total
    # Colour by advantage: the token tooltips change.
    viewer.locator("button:text-is('advantage')").click()
    expect(detail.locator("span[title^='advantage']").first).to_be_attached()
    page.screenshot(path=str(artifacts / "rollout_viewer_jupyterlab.png"))
    assert not errors, errors
