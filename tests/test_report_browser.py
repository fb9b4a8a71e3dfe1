"""The report as a reader sees it: rendered by headless Chromium at 1,400 px (the width checked
for a paper draft) and 800 px (a laptop's half screen), with no horizontal overflow (page or
table), no word broken across lines in a table, figure text at least 9 px on screen, and every
image loaded.

Chromium comes from Debian's ``chromium`` package through ``scripts/chromium.sh up``
(idempotent; installs with apt as root). Where it cannot be installed the tests skip and say
why; under CI (``CI`` set) they fail instead.

Screenshots: each test writes full-page PNGs at both widths into its pytest tmp directory,
``<basetemp>/<test name>0/<report>.png`` (``pytest --basetemp=DIR`` to choose DIR; pytest keeps
the last three runs' directories under /tmp/pytest-of-$USER otherwise) and prints their paths
(``pytest -s``).
"""

from __future__ import annotations

import json
import re
import struct
import subprocess
from pathlib import Path

import pytest

from analysis.report import main as report_main
from tests.helpers import ROOT, hand_written_sweep, provisioned, real_sweep

WIDTHS = (800, 1400)
MIN_TEXT_PX = 9  # figure text smaller than this on screen is not read, only squinted at
MAX_HEIGHT = 16000  # a taller window than this is a report no one scrolls through
# Run after the page and its images have loaded; leaves its findings in the DOM for --dump-dom.
PROBE = """<script>
window.addEventListener('load', () => {
  const tables = [...document.querySelectorAll('.tbl')].filter(t => t.scrollWidth > t.clientWidth + 1);
  const imgs = [...document.images];
  const out = {scrollWidth: document.documentElement.scrollWidth,
    scrollHeight: document.documentElement.scrollHeight, images: imgs.length,
    overflowing_tables: tables.map(t => t.querySelector('tr').textContent.slice(0, 80)),
    broken_images: imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.alt),
    image_scale: Math.min(...imgs.map(i => i.clientWidth / i.naturalWidth)), broken_words: []};
  for (const cell of document.querySelectorAll('td, th')) {  // a word whose letters sit on two lines
    const node = cell.firstChild;
    if (!node || node.nodeType !== 3) continue;
    const re = /[^\\s\\/-]+/g;  // breaking after a hyphen or a slash is typography; inside a word it is not
    let m;
    while ((m = re.exec(node.data)) && out.broken_words.length < 10) {
      const r = document.createRange();
      r.setStart(node, m.index); r.setEnd(node, m.index + m[0].length);
      const tops = new Set([...r.getClientRects()].map(q => Math.round(q.top)));
      if (tops.size > 1) out.broken_words.push(m[0]);
    }
  }
  const pre = document.createElement('pre');
  pre.id = 'probe';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""


@pytest.fixture(scope="module")
def chromium() -> str:
    return provisioned(["bash", str(ROOT / "scripts" / "chromium.sh"), "up"], "headless Chromium", timeout=900)


def test_provisioning_is_idempotent(chromium):
    """A second `up` finds the installed browser and says where it is; `status` agrees."""
    for cmd in ("up", "status"):
        again = subprocess.run(["bash", str(ROOT / "scripts" / "chromium.sh"), cmd], capture_output=True,
                               text=True, timeout=60, stdin=subprocess.DEVNULL)
        assert again.returncode == 0 and again.stdout.strip() == chromium, again.stderr
    assert "Chromium" in subprocess.run([chromium, "--version"], capture_output=True, text=True,
                                        timeout=60).stdout


def _chromium(binary: str, width: int, height: int, *args: str) -> str:
    cmd = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
           f"--window-size={width},{height}", "--virtual-time-budget=10000", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def render(binary: str, page: Path, shot: Path, width: int) -> dict:
    """Measure ``page`` at ``width`` px (a copy with PROBE added) and screenshot it whole to ``shot``."""
    probed = shot.with_suffix(".probe.html")
    probed.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    dom = _chromium(binary, width, 900, "--dump-dom", probed.as_uri())
    m = re.search(r'<pre id="probe">([^<]*)</pre>', dom)
    assert m, "the probe did not run: the page never finished loading"
    found = json.loads(m.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    _chromium(binary, width, min(found["scrollHeight"], MAX_HEIGHT), f"--screenshot={shot}", page.as_uri())
    found["shot_size"] = struct.unpack(">II", shot.read_bytes()[16:24])  # PNG IHDR: width, height
    print(f"screenshot: {shot} ({found['shot_size'][0]} x {found['shot_size'][1]} px)")
    return found


def check(found: dict, page: Path, width: int) -> None:
    from analysis.plots import DPI, FONT

    assert found["scrollWidth"] <= width, f"{page}: the page scrolls sideways ({found['scrollWidth']} px)"
    assert not found["overflowing_tables"], f"tables wider than the page: {found['overflowing_tables']}"
    assert not found["broken_words"], f"words broken across lines: {found['broken_words']}"
    n_img = page.read_text().count("<img ")
    assert found["images"] == n_img > 0 and not found["broken_images"], found
    # The smallest figure text (FONT points at DPI), as shown: images shrink to the page's width.
    assert FONT * DPI / 72 * found["image_scale"] >= MIN_TEXT_PX, found["image_scale"]
    assert found["shot_size"][0] == width and found["shot_size"][1] > 500


def test_hand_written_sweep_renders_at_800_and_1400px(chromium, tmp_path, monkeypatch):
    """Five runs in every state and the paper's tables: the widest tables the report makes."""
    monkeypatch.setenv("TINA_ANALYSIS_CACHE", str(tmp_path / "_cache"))
    sweep = hand_written_sweep(tmp_path / "sweep")
    assert report_main([str(sweep), "--out", str(tmp_path / "report"), "--paper"]) == 0
    page = tmp_path / "report" / "report.html"
    for width in WIDTHS:
        check(render(chromium, page, tmp_path / f"hand_written_sweep_{width}.png", width), page, width)


def test_real_sweep_renders_at_800_and_1400px(chromium, tmp_path_factory, tmp_path, monkeypatch):
    """The real tiny sweep, with the checkpoint experiment's figure."""
    monkeypatch.setenv("TINA_ANALYSIS_CACHE", str(tmp_path / "_cache"))
    sweep = real_sweep(tmp_path_factory)
    assert report_main([str(sweep), "--out", str(tmp_path / "report"), "--paper"]) == 0
    page = tmp_path / "report" / "report.html"
    for width in WIDTHS:
        found = render(chromium, page, tmp_path / f"real_sweep_{width}.png", width)
        check(found, page, width)
        # curves, cost vs accuracy (ours, and the paper's apart: other measures), the evaluated run's checkpoints
        assert found["images"] == 4


def test_verdicts_render_at_800_and_1400px(chromium, tmp_path, monkeypatch):
    """A seeds x rank sweep with per-problem held-out outcomes: the verdict table, the accuracies with
    their intervals, error bars and the frontier with ties, and what the paper's differences are worth."""
    import numpy as np

    from tests.synthetic_outcomes import ids, write_run
    from tina import run_dir as rd

    monkeypatch.setenv("TINA_ANALYSIS_CACHE", str(tmp_path / "_cache"))
    rng, sweep, j = np.random.default_rng(0), tmp_path / "sweep", 0
    for rank, p in ((8, 0.6), (32, 0.5), (64, 0.52)):
        for seed in (1, 2):
            run = write_run(sweep / f"{j}_lora.rank-{rank}__train.seed-{seed}", [f"lora.rank={rank}", f"train.seed={seed}"],
                            rng.binomial(1, p, 200), ids(200), benchmark=None, n_samples=1)
            rd.write_summary(run, wall_seconds=100.0 + 10 * rank + seed, device={"type": "cpu", "num_gpus": 0})
            j += 1
    assert report_main([str(sweep), "--out", str(tmp_path / "report"), "--paper"]) == 0
    page = tmp_path / "report" / "report.html"
    for width in WIDTHS:
        check(render(chromium, page, tmp_path / f"verdicts_{width}.png", width), page, width)
    html = page.read_text()
    assert "Verdicts: arms against the baseline" in html and "baseline lora.rank=32" in html
    assert html.count("indistinguishable") + html.count("better") + html.count("worse") >= 2
    assert "bars: 95% intervals" in html and "differences are worth" in html
