"""The HTML report as a reader sees it: opened in headless Chromium, the verdicts first, every figure and the paper
table shown with its caption, and nothing blank."""

import io
import os
import re
import shutil

import matplotlib.image
import pytest

from conftest import ROOT, run_snakemake
from quantreplay.grid import cells, plot_names

pytestmark = pytest.mark.slow

# Debian's chromium; `make test` installs it when it runs as root.
CHROMIUM = shutil.which("chromium")
# No GPU, no sandbox (CI runs as root in a container), no background requests.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                  "--disable-background-networking", "--disable-extensions", "--mute-audio"]  # fmt: skip


@pytest.fixture(scope="module")
def report(micro_grid):
    workdir, config = micro_grid
    path = workdir / "report.html"
    proc = run_snakemake(config, workdir, "--report", str(path))
    assert proc.returncode == 0, proc.stderr[-4000:]
    return path, config, proc.stderr


@pytest.fixture(scope="module")
def page(report):
    if CHROMIUM is None:
        reason = "Debian's chromium is not installed (`make test` installs it with apt-get when run as root)"
        if os.environ.get("QUANTREPLAY_REQUIRE_CHROMIUM") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        outside = []
        # The report is self-contained: anything but the file itself and inline data is a leak.
        page.on("request", lambda r: None if r.url.startswith(("file:", "data:")) else outside.append(r.url))
        yield page
        browser.close()
        assert not outside, f"the report fetched {outside}"


def _caption(name: str) -> str:
    """The first words of a figure's caption file, as the report shows them (markup and line breaks gone)."""
    text = (ROOT / "report" / f"{name}.rst").read_text()
    return " ".join(re.sub(r"[`*]", "", text).split()[:6])


def _assert_shown(page, tmp_path, label: str) -> None:
    """The image the report shows now is a real figure: its own size, and not blank on screen."""
    image = page.locator("img[src^='data:image/png']")
    image.wait_for()
    assert image.evaluate("e => e.naturalWidth") > 300, label
    shot = matplotlib.image.imread(io.BytesIO(image.screenshot(path=tmp_path / f"{label}.png")), format="png")
    assert shot.shape[0] > 200 and shot.shape[1] > 200, label
    # A white or single-colour area has no spread; axes, text and colour maps do.
    assert shot[..., :3].std() > 0.05, label


def _open(page, report_path, *names: str) -> None:
    page.goto(report_path.as_uri())
    for name in names:
        page.get_by_text(name, exact=True).click()


def test_every_caption_renders_without_markup_errors(report):
    """docutils reports a caption's bad markup (`|W|` read as a substitution, say) only on stderr, and the report
    still builds, with an error box where the text should be."""
    _, _, stderr = report
    assert not re.findall(r"\((?:WARNING|ERROR|SEVERE)/\d\).*", stderr)


def test_every_figure_is_shown_with_its_caption(report, page, tmp_path):
    path, config, _ = report
    _open(page, path)
    assert "quantreplay: LoRA fine-tuning" in page.inner_text("body")
    for name in plot_names(config):
        _open(page, path, "Figures")
        # Figures are listed by their labels (number, file), not their paths.
        row = page.locator("tr", has_text=f"{name}.png")
        row.locator("a[iconname=eye]").click()
        _assert_shown(page, tmp_path, name)
        row.locator("a[iconname=information-circle]").click()
        assert _caption(name) in " ".join(page.inner_text("body").split()), name


def test_every_cell_has_its_r_matrix_in_the_report(report, page, tmp_path):
    path, config, _ = report
    shown = 0
    for precision in config["precisions"]:
        for buffer in ("0", "0.1"):
            _open(page, path, "R matrices", f"toy, {precision}")
            page.get_by_text(buffer, exact=True).first.click()
            page.locator("tr", has_text="0").locator("a[iconname=eye]").first.click()
            _assert_shown(page, tmp_path, f"r-{precision}-{buffer}")
            alt = page.locator("img[src^='data:image/png']").get_attribute("src")
            assert f"buf{buffer}.png" in alt[:200], (precision, buffer)
            shown += 1
    assert shown == len(cells(config))


def test_the_verdicts_come_first_then_the_figure_that_answers_the_question(report, page):
    path, config, _ = report
    _open(page, path)
    menu = page.inner_text("body")
    # Categories are listed alphabetically: Claims opens the results.
    assert menu.index("Claims") < menu.index("Figures") < menu.index("Tables")
    _open(page, path, "Claims")
    page.locator("tr", has_text="results/tables/findings.html").locator("a[iconname=eye]").click()
    frame = page.frame_locator("iframe")
    assert "Verdicts on the paper's headline claims" in frame.locator("h1").inner_text()
    verdicts = frame.locator("table").first.locator("tr")
    assert verdicts.count() == 6 and "C1" in verdicts.nth(1).inner_text()
    _open(page, path, "Figures")
    rows = page.locator("tbody tr")
    assert rows.count() == len(plot_names(config))
    assert "retention_by_buffer.png" in rows.first.inner_text() and plot_names(config)[0] == "retention_by_buffer"


def test_the_mechanism_table_and_its_reading_are_shown(report, page):
    path, _, _ = report
    _open(page, path, "Mechanism")
    page.locator("tr", has_text="results/tables/mechanism.html").locator("a[iconname=eye]").click()
    frame = page.frame_locator("iframe")
    assert "What the control arms say" in frame.locator("h1").inner_text()
    # The reference, int8 and nf4, two metrics each; the micro grid has no arm, and the text says so.
    assert frame.locator("table").first.locator("tr").count() == 1 + 3 * 2
    assert "no control arm in this grid" in frame.locator("ul").first.inner_text()


def test_the_paper_table_is_shown(report, page, tmp_path):
    path, _, _ = report
    _open(page, path, "Tables")
    for table in ("accuracy.csv", "summary.csv", "intervals.csv", "comparison.csv", "findings.csv",
                  "paper_table.html"):  # fmt: skip
        assert page.locator("tr", has_text=f"results/tables/{table}").count() == 1, table
    page.locator("tr", has_text="results/tables/paper_table.html").locator("a[iconname=eye]").click()
    frame = page.frame_locator("iframe")
    assert "Accuracy in percent" in frame.locator("body").inner_text()
    assert frame.locator("table").count() == 3 and frame.locator("tr").count() > 10
    shot = matplotlib.image.imread(io.BytesIO(page.locator("iframe").screenshot()), format="png")
    assert shot[..., :3].std() > 0.05
