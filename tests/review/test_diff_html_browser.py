"""The HTML diff of small_cnn against a widened variant with an added residual block, in a real
headless Chromium: the page's script runs without error, and in the DOM it leaves, the changed and
added layers are marked and the deltas shown; a screenshot of the page is kept.

The browser is Debian's `chromium` (`.ci/run` installs it when missing), or the one CNNSPEC_BROWSER
names; without one the test skips and says so. It is run twice, through its command-line switches
(`--dump-dom`: the DOM after the scripts ran; `--screenshot`), each a fresh profile in the test's
folder. The screenshot and the page are saved under CNNSPEC_TEST_ARTIFACTS (default: the test's tmp
folder), and their paths printed (pytest -s shows them).

Slow: two browser starts, about 3 s each on a quiet 2-core machine.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.cli_helpers import run_cli
from tests.review.browser_helpers import WINDOW, browser, headless
from tests.review.drawing import read_html
from tests.review.review_helpers import DATA, SPECS

pytestmark = pytest.mark.slow

ADDED = ["res.conv_a", "res.bn_a", "res.relu_2", "res.conv_b", "res.bn_b", "res.downsample", "res.add", "res.relu"]


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    named = os.environ.get("CNNSPEC_TEST_ARTIFACTS")
    folder = Path(named) if named else tmp_path_factory.mktemp("artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_the_html_diff_in_a_real_browser_marks_the_changes_and_shows_the_deltas(
    tmp_path: Path, artifacts: Path
) -> None:
    binary = browser()
    report = artifacts / "small_cnn-diff.html"
    result = run_cli(
        "diff",
        str(SPECS / "small_cnn.yaml"),
        str(DATA / "small_cnn_wide_residual.yaml"),
        "-f",
        "html",
        "-o",
        str(report),
    )
    assert result.exit_code == 1, result.stderr
    url = report.resolve().as_uri()

    dumped = headless(binary, tmp_path / "profile-dom", "--dump-dom", url=url)
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    dom = dumped.stdout
    page = read_html(dom)
    body = next(a for tag, a in page.elements if tag == "body")
    assert body.get("data-ready") == "1", "the page's script did not run to its end"
    new = page.drawings["new"]
    assert new.boxes["conv2"]["data-status"] == "changed"
    assert sorted(k for k, v in new.boxes.items() if v.get("data-status") == "added") == sorted(ADDED)
    assert page.drawings["old"].boxes["conv2"]["data-status"] == "changed"
    assert "out_channels: 64 → 96</text>" in dom  # the parameter change, in the changed box
    assert '<td class="delta up">+437,728 (+80.3%)</td>' in dom  # params
    assert '<td class="delta up">+13,238,272 (+216.0%)</td>' in dom  # MACs
    assert '<td class="delta up">+16 (+42.1%)</td>' in dom  # receptive field

    shot = artifacts / "small_cnn-diff.png"
    shot.unlink(missing_ok=True)
    taken = headless(binary, tmp_path / "profile-shot", f"--screenshot={shot}", url=url)
    assert taken.returncode == 0 and shot.is_file(), taken.stderr[-2000:]
    print(f"\nSCREENSHOT: {shot}\nPAGE: {report}")
    from PIL import Image

    with Image.open(shot) as image:
        assert image.size == WINDOW
        colours = {c for _, c in image.convert("RGB").getcolors(maxcolors=1 << 22) or []}
    assert (0xFE, 0xF0, 0x8A) in colours  # the changed layer's yellow is on screen
    assert (0xBB, 0xF7, 0xD0) in colours  # and the added layers' green
