"""`bisector report --html` opened in a real headless browser (Debian's chromium): the plot and the
evidence table are drawn, and the page makes no request (a recording proxy sees none, while it does
see the request of a control page that loads an image from elsewhere)."""

from __future__ import annotations

import http.server
import shutil
import subprocess
import re
import threading
from pathlib import Path

import pytest

from tests.fixtures.cli import bisector
from tests.fixtures.repos import GitRepo

pytestmark = pytest.mark.slow
CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium on PATH: install it (Debian: `apt-get install -y chromium`) to run this test")
BROWSER_HOSTS = r"(^|[/.\s])(google|googleapis|gvt1|gstatic)\.com\b"
QUIET = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-default-apps", "--disable-extensions",
         "--metrics-recording-only", "--disable-features=Translate,OptimizationHints,MediaRouter",
         "--hide-scrollbars"]


class _Recorder(http.server.BaseHTTPRequestHandler):
    seen: list[str] = []

    def _record(self) -> None:
        type(self).seen.append(f"{self.command} {self.path}")
        self.send_response(404)
        self.end_headers()

    do_GET = do_POST = do_CONNECT = do_HEAD = _record

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def proxy():
    _Recorder.seen = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1], _Recorder.seen
    server.shutdown()


def browse(page: Path, port: int, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CHROMIUM, *QUIET, f"--user-data-dir={tmp_path / 'profile'}", f"--proxy-server=http://127.0.0.1:{port}",
         "--proxy-bypass-list=<-loopback>", *args, page.as_uri()],
        capture_output=True, text=True, timeout=120, check=False)


def session(repo: GitRepo) -> dict[str, str]:
    scores = [9, 9, 8, 8, 3, 2]
    shas = {f"c{i}": repo.commit({"metrics.json": f'{{"score": {s}}}'}, f"c{i}") for i, s in enumerate(scores, 1)}
    repo.write({"bisector.toml": '[probe]\ntype = "metric"\nfile = "metrics.json"\ncondition = "score >= 5"\n'})
    res = bisector(repo.path, "run", "--good", shas["c1"], "--bad", shas["c6"])
    assert res.returncode == 0 and f"{shas['c5']} is the first bad commit" in res.stdout, res.stdout + res.stderr
    return shas


@needs_chromium
def test_the_html_report_renders_in_a_browser_without_requests(repo: GitRepo, tmp_path: Path, proxy) -> None:
    port, seen = proxy
    session(repo)
    page = tmp_path / "report.html"
    assert bisector(repo.path, "report", "--html", "-o", str(page)).returncode == 0
    dom = browse(page, port, tmp_path, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert dom.stdout.count('<circle class="point"') >= 3  # the plot's points (one per step), in the rendered DOM
    assert 'class="threshold"' in dom.stdout and 'class="culprit"' in dom.stdout
    rows = dom.stdout.split('<table id="evidence">')[1].split("</table>")[0].count("<tr>")
    assert rows >= 4  # a header and a row per step
    shot = tmp_path / "shot.png"
    res = browse(page, port, tmp_path, f"--screenshot={shot}", "--window-size=1100,1600")
    assert res.returncode == 0 and shot.is_file(), res.stderr[-2000:]
    pixels = _colors(shot)
    assert {"green", "red", "threshold"} <= pixels, pixels  # the points and the threshold line are drawn
    # The browser's own services (component updates, time, accounts) are not the page's requests;
    # the page names none of their hosts.
    assert not re.search(BROWSER_HOSTS, page.read_text())
    assert [s for s in seen if not re.search(BROWSER_HOSTS, s)] == [], f"the report made requests: {seen}"
    # The recorder does see a page that loads something from elsewhere.
    control = tmp_path / "control.html"
    control.write_text('<!DOCTYPE html><img src="http://example.invalid/x.png">')
    browse(control, port, tmp_path, "--dump-dom")
    assert any("example.invalid" in s for s in seen), seen


def _colors(png: Path) -> set[str]:
    """Which of the plot's colors appear in a screenshot."""
    import matplotlib.image

    img = (matplotlib.image.imread(str(png))[:, :, :3] * 255).round().astype(int)
    found = set()
    for name, rgb in {"green": (0x2A, 0x9D, 0x3A), "red": (0xD6, 0x27, 0x28), "threshold": (0xE0, 0xA8, 0x00)}.items():
        if (abs(img - rgb).sum(axis=2) < 30).any():
            found.add(name)
    return found


def test_the_markdown_reports_plot_draws_the_threshold(repo: GitRepo, tmp_path: Path) -> None:
    """The PNG of `bisector report` (matplotlib) carries the metric's limit as a line, like the HTML plot."""
    pytest.importorskip("matplotlib")
    import matplotlib.image

    session(repo)
    out = tmp_path / "report.md"
    assert bisector(repo.path, "report", "-o", str(out)).returncode == 0
    img = (matplotlib.image.imread(str(out.with_suffix(".png")))[:, :, :3] * 255).round().astype(int)
    orange = (abs(img - (0xFF, 0x7F, 0x0E)).sum(axis=2) < 30)  # tab:orange, the threshold line
    rows = orange.sum(axis=1)
    assert rows.max() > img.shape[1] * 0.5, "no horizontal threshold line across the plot"
