"""The graph page's `#view=PATH` in a real headless Chromium (tests/review/browser_helpers.py; skipped,
saying so, without one): a hash that names a group opens its view, and a malformed one (a `%` escape
that decodeURIComponent rejects, a path that names nothing) leaves the page showing the whole model,
its script run to its end (`data-ready="1"`), instead of a page the script stopped on half-way.

Slow: one browser start per URL, about 3 s each on a quiet 2-core machine.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli_helpers import run_cli
from tests.review.browser_helpers import browser, headless
from tests.review.drawing import read_html
from tests.review.review_helpers import SPECS

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def page_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    out = tmp_path_factory.mktemp("page") / "resnet18.html"
    result = run_cli("graph", str(SPECS / "resnet18.yaml"), "--depth", "1", "-o", str(out))
    assert result.exit_code == 0, result.stderr
    return out.resolve().as_uri()


def shown(binary: str, profile: Path, url: str) -> tuple[str | None, str | None, list[str]]:
    """After the page's script ran at `url`: body's data-ready and data-view, and the views not hidden."""
    dumped = headless(binary, profile, "--dump-dom", url=url)
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    page = read_html(dumped.stdout)
    body = next(a for tag, a in page.elements if tag == "body")
    visible = [s["data-view"] for s in page.sections if "hidden" not in s]
    return body.get("data-ready"), body.get("data-view"), visible


@pytest.mark.parametrize(
    ("fragment", "view"),
    [
        ("#view=layer2", "layer2"),  # a group's view, opened by its link
        ("#view=%E0%A4%A", ""),  # a truncated UTF-8 escape: decodeURIComponent throws URIError
        ("#view=%", ""),
        ("#view=no.such.group", ""),
    ],
)
def test_the_hash_opens_its_view_and_a_malformed_one_shows_the_whole_model(
    page_url: str, tmp_path: Path, fragment: str, view: str
) -> None:
    ready, body_view, visible = shown(browser(), tmp_path / "profile", page_url + fragment)
    assert ready == "1", "the page's script did not run to its end"
    assert body_view == view
    assert visible == [view]
