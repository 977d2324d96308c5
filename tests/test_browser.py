"""The config editor and the dashboard as a person sees them: JupyterLab on localhost, a notebook that
builds both, headless Chromium (Debian's package, driven by Playwright) at a 1,100 px viewport, the width
of a Kaggle notebook column. The checks read the rendered page; the screenshots go to nbs/images/ for the
README. `.ci/run` installs Chromium; Playwright never downloads a browser here."""
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import ROOT

# a hang anywhere (browser, server, kernel) fails its test instead of holding CI to its time limit
pytestmark = [pytest.mark.browser, pytest.mark.timeout(900)]
WIDTH = 1100
CHROMIUM = next((p for p in (os.environ.get("SAD_CHROMIUM"), shutil.which("chromium"), "/usr/bin/chromium") if p and Path(p).exists()), None)
IMAGES = ROOT / "nbs" / "images"


def _free_port() -> int:
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close(); return port


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    "A finished 40-step run of the embedded pair, every objective on, one step skipped: what the dashboard draws."
    from sad_kaggle.config import DistillConfig, with_every_objective
    from sad_kaggle.trainer import train
    out = tmp_path_factory.mktemp("browser") / "run"
    cfg = with_every_objective(DistillConfig.from_preset("tiny-cpu", max_steps=40, eval_steps=10, dataset_subset_size=400,
                                                         eval_subset_size=32, output_dir=str(out)))
    train(cfg, log=lambda *a, **k: None, faults={"nan_steps": [15]})
    return out


@pytest.fixture(scope="module")
def lab(tmp_path_factory, finished_run):
    "JupyterLab serving a notebook that shows the editor, the run's dashboard and `editor.config`; yields (url, server log)."
    import nbformat
    base = tmp_path_factory.mktemp("lab")
    root = base / "root"; root.mkdir()
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell('import os\nos.environ["HF_HUB_OFFLINE"] = "1"\nfrom sad_kaggle.widgets import ConfigEditor\n'
                                          'editor = ConfigEditor(preset="tiny-cpu")\neditor'),
                nbformat.v4.new_code_cell(f'from sad_kaggle.plots import show_dashboard\nshow_dashboard({str(finished_run)!r}, baseline=3.0)'),
                nbformat.v4.new_code_cell("editor.config")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, root / "check.ipynb")
    settings = base / "settings" / "@jupyterlab"
    (settings / "apputils-extension").mkdir(parents=True)
    (settings / "apputils-extension" / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False}))      # no news toast over the page
    (settings / "notebook-extension").mkdir(parents=True)
    (settings / "notebook-extension" / "tracker.jupyterlab-settings").write_text(
        json.dumps({"windowingMode": "none"}))                              # every cell in the DOM, scrolled or not
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "JUPYTER_CONFIG_DIR": str(base / "config"),
           "JUPYTER_RUNTIME_DIR": str(base / "runtime"), "JUPYTERLAB_SETTINGS_DIR": str(base / "settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(base / "workspaces")}
    port, token = _free_port(), secrets.token_hex(12)
    log = open(base / "lab.log", "w")
    server = subprocess.Popen([sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
                               f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}", "--allow-root",
                               "--LabApp.expose_app_in_browser=True"],      # window.jupyterapp: run cells by command
                              env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            try: urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2); break
            except OSError: time.sleep(0.5)
            assert server.poll() is None, (base / "lab.log").read_text()[-3000:]
        else: raise AssertionError("JupyterLab did not start in 120 s:\n" + (base / "lab.log").read_text()[-3000:])
        yield f"{url}/lab/tree/check.ipynb?token={token}", base / "lab.log"
    finally:
        server.terminate()
        try: server.wait(20)
        except subprocess.TimeoutExpired: server.kill()
        log.close()


@pytest.fixture(scope="module")
def page(lab):
    "The notebook opened and run in headless Chromium at 1,100 px."
    assert CHROMIUM, "the browser test needs Debian's chromium: apt-get install -y chromium (or set SAD_CHROMIUM)"
    from playwright.sync_api import sync_playwright
    url, server_log = lab
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu",
                                    "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        pg = browser.new_page(viewport={"width": WIDTH, "height": 1000})
        pg.set_default_timeout(90_000)
        pg.goto(url)
        kernel = "window.jupyterapp.shell.currentWidget.sessionContext.session.kernel"
        pg.wait_for_function(f"window.jupyterapp && window.jupyterapp.shell.currentWidget && "
                             f"window.jupyterapp.shell.currentWidget.sessionContext.session && {kernel} && {kernel}.status === 'idle'")
        pg.evaluate("window.jupyterapp.shell.collapseLeft()")               # the notebook column gets the width
        # not awaited: the command's promise settles only when every cell has reported back, and one may never
        # (below) while evaluate() has no timeout
        pg.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
        # Done = every cell has its number and the editor is drawn. A cell stuck at [*] or an editor never drawn was
        # the page losing messages when the editor opened 1,284 widget models (7 of 100 runs here; CI once): 07_widgets
        # "Few messages" cut it to 440 (0 of 60).
        try: pg.wait_for_function("[...document.querySelectorAll('.jp-Cell .jp-InputArea-prompt')]"
                                  ".every(p => /^\\[\\d+\\]:$/.test(p.textContent.trim())) && "
                                  "document.querySelector('.sad-editor .sad-groups')", timeout=300_000)
        except Exception as e:        # a first run imports torch & co. cold: minutes, not hours
            raise AssertionError(f"the cells did not all finish in 300 s; prompts: {_prompts(pg)}; server log:\n"
                                 + server_log.read_text()[-2000:]) from e
        pg.wait_for_selector(".sad-editor .sad-groups")
        pg.wait_for_selector("img.sad-dashboard")
        pg.wait_for_function("document.querySelector('.sad-editor img') && document.querySelector('.sad-editor img').naturalWidth > 0")
        yield pg
        browser.close()


def _prompts(page) -> list[str]:
    "Each cell's execution prompt: '[3]:' done, '[*]:' still running."
    return page.evaluate("[...document.querySelectorAll('.jp-Cell .jp-InputArea-prompt')].map(p => p.textContent.trim())")


def _open_group(page, name: str):
    "Open the accordion section of group `name` (headers read 'name · N settings ...')."
    header = page.locator(".sad-groups .jupyter-widget-Collapse-header", has_text=f"{name} ·")
    if "Collapse-open" not in (header.locator("xpath=..").get_attribute("class") or ""): header.click()
    page.wait_for_function("(n) => [...document.querySelectorAll('.sad-groups .jupyter-widget-Collapse-open "
                           ".jupyter-widget-Collapse-header')].some(h => h.textContent.startsWith(n + ' ·'))", arg=name)


def _screenshot(page, locator, path: Path):
    "A whole element, however tall: the viewport grows to hold it (JupyterLab clips what its panel scrolls away)."
    height = int(_rect(locator)["h"]) + 300
    page.set_viewport_size({"width": WIDTH, "height": max(1000, height)})
    try:
        locator.scroll_into_view_if_needed(); time.sleep(0.5)
        locator.screenshot(path=str(path))
    finally: page.set_viewport_size({"width": WIDTH, "height": 1000})
    assert path.stat().st_size > 10_000


def _rect(locator) -> dict:
    return locator.evaluate("e => { const r = e.getBoundingClientRect(); return {x: r.x, y: r.y, w: r.width, h: r.height} }")


def test_group_titles_fully_visible(page):
    titles = page.evaluate("""[...document.querySelectorAll('.sad-groups .jupyter-widget-Collapse-header')].map(h => {
        const s = h.querySelector('span'), hr = h.getBoundingClientRect(), sr = s.getBoundingClientRect();
        return {text: s.textContent, clipped: s.scrollWidth > s.clientWidth + 1 || sr.right > hr.right + 1, width: sr.width}; })""")
    from sad_kaggle.widgets import _groups
    assert [t["text"].split(" · ")[0] for t in titles] == list(_groups())
    assert not [t for t in titles if t["clipped"] or t["width"] < 10], titles


def test_every_slider_wide_enough(page):
    from sad_kaggle.widgets import _groups
    seen = 0
    for group in _groups():
        _open_group(page, group)
        widths = page.evaluate("""[...document.querySelectorAll('.sad-groups .jupyter-widget-Collapse-open .widget-slider')]
            .filter(e => e.offsetParent !== null).map(e => {
                const t = e.querySelector('.slider-container') || e;
                return [e.closest('.sad-field').className.match(/sad-field-(\\w+)/)[1], t.getBoundingClientRect().width]; })""")
        assert all(w >= 200 for _, w in widths), (group, widths)
        seen += len(widths)
        # every slider has its number box beside it, on the same row
        boxes = page.evaluate("""[...document.querySelectorAll('.sad-groups .jupyter-widget-Collapse-open .widget-slider')]
            .filter(e => e.offsetParent !== null).map(e => { const b = e.parentElement.querySelector('input[type=number]');
                return b && Math.abs(b.getBoundingClientRect().top - e.getBoundingClientRect().top) < 20; })""")
        assert all(boxes), (group, boxes)
    assert seen >= 10, seen


def test_counts_are_dropdowns(page):
    _open_group(page, "optimization")
    options = page.locator(".sad-field-batch_size select option").all_inner_texts()
    assert options[:4] == ["1", "2", "4", "8"], options


def test_valid_change_redraws_preview_then_screenshot(page):
    _open_group(page, "optimization")
    before = page.locator(".sad-editor img").get_attribute("src")
    page.locator(".sad-field-batch_size select").select_option("4")
    page.wait_for_function("document.querySelector('.sad-preview-text').textContent.includes('(effective batch 8)')")
    page.wait_for_function("(s) => document.querySelector('.sad-editor img').getAttribute('src') !== s", arg=before)
    assert "'batch_size': 4" in page.locator(".sad-editor textarea").last.input_value()    # the overrides text
    # typing into the box beside a slider redraws the preview and moves the slider
    box = page.locator(".sad-field-warmup_ratio input[type=number]")
    box.fill("0.2"); box.press("Enter")
    page.wait_for_function("document.querySelector('.sad-preview-text').textContent.includes('warmup 30,')")
    handle = page.locator(".sad-field-warmup_ratio .noUi-handle")
    assert abs(float(handle.get_attribute("aria-valuenow")) - 0.2) < 1e-6
    IMAGES.mkdir(exist_ok=True)
    _screenshot(page, page.locator(".sad-editor"), IMAGES / "editor-1100px.png")


def test_invalid_value_shown_at_its_field_and_config_says_which(page):
    _open_group(page, "distillation")
    box = page.locator(".sad-field-temperature input[type=number]")
    box.fill("-1"); box.press("Enter")
    error = page.locator(".sad-field-temperature .sad-error")
    error.wait_for()
    assert "temperature: expected a number in (0, 100]" in error.inner_text()
    b, e = _rect(box), _rect(error)
    # right under the field's row (slider and box), overlapping the box horizontally
    assert 0 <= e["y"] - (b["y"] + b["h"]) < 40 and e["x"] <= b["x"] + b["w"] and e["x"] + e["w"] >= b["x"], (b, e)
    assert "⚠ 1 invalid" in page.locator(".sad-groups .jupyter-widget-Collapse-header", has_text="distillation ·").inner_text()
    assert "invalid" in page.locator(".sad-editor").inner_text()
    # editor.config now says which field, one line each, without a traceback
    page.evaluate("(() => { const nb = window.jupyterapp.shell.currentWidget.content; nb.activeCellIndex = 2; })()")
    page.evaluate("window.jupyterapp.commands.execute('notebook:run-cell')")
    out = page.locator(".jp-Cell").nth(2).locator(".jp-OutputArea-output")
    out.wait_for()
    page.wait_for_function("document.querySelectorAll('.jp-Cell')[2].innerText.includes('invalid setting')")
    text = out.inner_text()
    assert "1 invalid setting(s) in the form (temperature)" in text and "Traceback" not in text, text
    box.fill("2"); box.press("Enter")
    page.wait_for_function("!document.querySelector('.sad-field-temperature .sad-error')")


def test_dashboard_headline_and_screenshot(page, finished_run):
    from sad_kaggle.plots import read_metrics
    m = read_metrics(finished_run)
    headline = page.locator(".sad-headline").inner_text()
    assert "40 / 40" in headline and f"{m['eval'][-1]['eval_bits_per_byte']:.3f}" in headline, headline
    assert f"teacher {m['eval'][-1]['eval_teacher_bits_per_byte']:.3f}" in headline and "CE-only 3.000" in headline
    assert "tokens/s" in headline and "skipped steps" in headline
    img = page.locator("img.sad-dashboard")
    size = img.evaluate("e => [e.naturalWidth, e.getBoundingClientRect().width]")
    assert size[0] == WIDTH and size[1] >= 800, size           # drawn for the column, shown at (nearly) full size
    out = page.locator(".jp-Cell").nth(1).locator(".jp-OutputArea-output")
    _screenshot(page, out, IMAGES / "dashboard-1100px.png")
