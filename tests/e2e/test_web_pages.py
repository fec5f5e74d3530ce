"""The web pages in a real headless Chromium (Debian's, driven by Playwright) on the live stack.

A participant signs in, uploads a bundle from the page straight to the store (progress bar),
watches the run end without reloading and finds it on the leaderboard; anonymous visitors,
other participants and failed runs get what the API gives them; axe-core checks every page.
Screenshots go to $EVALUATOR_TEST_ARTIFACTS (default: <tmp>/evaluator-test-artifacts).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from tests.conftest import require
from tests.e2e.bundles import sklearn_bundle
from tests.integration.helpers import tar_bundle

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
AXE = Path(os.environ.get("EVALUATOR_TEST_AXE_JS", "/var/cache/evaluator/node/node_modules/axe-core/axe.min.js"))
ARTIFACTS = Path(os.environ.get("EVALUATOR_TEST_ARTIFACTS") or Path(tempfile.gettempdir()) / "evaluator-test-artifacts")
AXE_RUN = """async () => (await axe.run(document, {resultTypes: ["violations"]})).violations
    .filter(v => v.impact === "serious" || v.impact === "critical")
    .map(v => ({id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 3).map(n => n.html)}))"""


@pytest.fixture
def stack(emptied_shared_stack):
    """The module's one stack, emptied before each test."""
    return emptied_shared_stack


@pytest.fixture(scope="module")
def chromium():
    require(Path(CHROMIUM).exists(), f"Chromium at {CHROMIUM} (scripts/machine.sh browser)")
    require(AXE.exists(), f"axe-core at {AXE} (scripts/machine.sh browser)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require(False, "Playwright for Python (the [test] extra)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture
def web(stack, images_built):
    """The live stack with iris:1, a public benchmark `iris` and a private one; (admin, alice) tokens."""
    images_built("sklearn")
    admin, alice, _ = stack.competition({"id": "iris", "title": "Iris <i>flowers</i>", "task": "classification",
                                         "limits": {"timeout_s": 60, "memory": "512m"}})
    made = stack.call("POST", "/v1/benchmarks", admin, json={"id": "secret", "dataset": "iris:1",
                                                             "task": "classification", "visibility": "private"})
    assert made.status_code == 201, made.text
    return admin, alice


def shot(page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def accessible(page, name: str) -> None:
    """No serious or critical axe-core violation on this page (and a screenshot of it)."""
    page.add_script_tag(path=str(AXE))
    violations = page.evaluate(AXE_RUN)
    shot(page, name)
    assert not violations, f"{name}: {violations}"


def signed_in(chromium, stack, token: str):
    """A fresh browser context signed in through the sign-in form; returns (context, page)."""
    # NOTE: bypass_csp lets the test inject axe-core; the pages' own CSP forbids inline scripts.
    context = chromium.new_context(bypass_csp=True, viewport={"width": 1200, "height": 900})
    page = context.new_page()
    page.goto(stack.url + "/session")
    page.get_by_label("API token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(stack.url + "/me")
    return context, page


def test_a_participant_submits_from_the_page_watches_it_succeed_and_finds_it_ranked(chromium, stack, web,
                                                                                    tmp_path):
    admin, alice = web
    context, page = signed_in(chromium, stack, alice)
    accessible(page, "me")
    # A real bundle, padded so that the upload reports progress more than once
    bundle = tar_bundle({**_members(sklearn_bundle()), "padding.bin": os.urandom(3 * 1024 * 1024)})
    path = tmp_path / "model.tar.gz"
    path.write_bytes(bundle)
    page.evaluate("window.__notReloaded = true")
    page.get_by_label("Bundle (.tar.gz, .tgz or .zip)").set_input_files(str(path))
    page.get_by_role("button", name="Upload and evaluate").click()

    progress = page.locator("#upload-bar")
    progress.wait_for(state="visible")
    page.wait_for_function("document.getElementById('upload-text').textContent.startsWith('Upload complete')",
                           timeout=60_000)
    assert page.locator("#upload-text").inner_text() == f"Upload complete ({len(bundle)} bytes)"
    assert progress.evaluate("bar => bar.value") == 100
    assert int(progress.get_attribute("data-updates") or 0) >= 1  # the XHR's progress events drove the bar
    page.wait_for_function("['succeeded', 'failed', 'timed_out', 'cancelled']"
                           ".includes(document.getElementById('live-status').textContent)", timeout=240_000)
    shot(page, "me-after-submit")
    assert page.locator("#live-status").inner_text() == "succeeded", page.locator("#live-failure").inner_text()
    assert page.evaluate("window.__notReloaded === true")  # followed live, never reloaded
    run_id = page.locator("#live-link").get_attribute("href").rsplit("/", 1)[1]
    # The bytes went to the store, not through the API: the API's log has no POST of the bundle
    assert "padding" not in (stack.logs / "api.log").read_text(errors="replace")

    page.goto(stack.url + "/benchmarks/iris")
    accessible(page, "benchmark")
    row = page.locator("table.leaderboard tbody tr", has_text="alice")
    assert row.locator("td").first.inner_text() == "1"
    assert row.locator("svg.ci").count() == 1  # the 95% CI drawn as a bar
    api_board = stack.call("GET", "/v1/benchmarks/iris/leaderboard", alice).json()
    assert api_board["entries"][0]["run_id"] == run_id
    assert row.locator("td").nth(1).inner_text() == f"{api_board['entries'][0]['score']:.4f}".rstrip("0").rstrip(".")
    assert page.get_by_role("heading", level=1).inner_text().startswith("Iris <i>flowers</i>")  # escaped, as text

    page.goto(stack.url + f"/runs/{run_id}")
    accessible(page, "run")
    assert page.locator("#run-status").inner_text() == "succeeded"
    assert page.get_by_role("table", name="Stage timeline").locator("tbody tr").count() == 6
    assert page.get_by_role("table", name="Per class").locator("tbody tr").count() == 3
    # The predictions link is a presigned GET of the store (303 from the page)
    response = context.request.get(stack.url + f"/runs/{run_id}/predictions", max_redirects=0)
    assert response.status == 303 and response.headers["location"].startswith(stack.config.s3_endpoint_url)

    # A form posted without its CSRF token is refused, and the session survives it
    refused = context.request.post(stack.url + "/session/end", form={"next": "/"})
    assert refused.status == 403 and "CSRF" in refused.text()
    page.goto(stack.url + "/me")
    assert "Signed in as" in page.locator("header").inner_text()
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(stack.url + "/")
    assert page.goto(stack.url + f"/runs/{run_id}").status == 401
    context.close()


def _members(bundle: bytes) -> dict[str, bytes]:
    import io
    import tarfile

    with tarfile.open(fileobj=io.BytesIO(bundle)) as archive:
        return {m.name: archive.extractfile(m).read() for m in archive.getmembers() if m.isfile()}


def test_visitors_see_what_the_api_shows_them_and_a_failed_run_shows_its_code(chromium, stack, web):
    from evaluator.tokens import create_token

    admin, alice = web
    bob, _ = create_token("bob", "participant")
    broken = tar_bundle({"evaluator.yaml": b"name: broken\nversion: 1\nframework: sklearn\nmodel: missing.joblib\n"})
    grant = stack.call("POST", "/v1/benchmarks/iris/submissions", alice,
                       json={"name": "broken", "method": "put", "size": len(broken)}).json()
    import requests

    assert requests.put(grant["upload"]["url"], data=broken, headers=grant["upload"]["headers"], timeout=30).ok
    run_id = stack.wait_for(f"/v1/submissions/{grant['submission']['id']}", alice, lambda s: s["runs"])["runs"][0]["id"]
    failed = stack.wait_for(f"/v1/runs/{run_id}", alice, lambda r: r["status"] in {"failed", "succeeded"}, 180)
    assert failed["status"] == "failed", failed

    # The anonymous visitor: the public list and board; the private benchmark is a 404 page
    anonymous = chromium.new_context(bypass_csp=True, viewport={"width": 1200, "height": 900})
    page = anonymous.new_page()
    assert page.goto(stack.url + "/").status == 200
    accessible(page, "home")
    assert page.get_by_role("link", name="Iris <i>flowers</i>").count() == 1
    assert page.get_by_text("secret").count() == 0
    assert page.goto(stack.url + "/benchmarks/iris").status == 200
    assert page.get_by_role("heading", name="Public leaderboard").count() == 1
    response = page.goto(stack.url + "/benchmarks/secret")
    assert response.status == 404 and page.get_by_role("heading", level=1).inner_text().startswith("404")
    accessible(page, "not-found")
    page.goto(stack.url + "/session")
    accessible(page, "sign-in")
    anonymous.close()

    # Another participant: alice's run is a 404 page, as GET /v1/runs/{id} is for him
    context, page = signed_in(chromium, stack, bob)
    assert page.goto(stack.url + f"/runs/{run_id}").status == 404
    assert stack.call("GET", f"/v1/runs/{run_id}", bob).status_code == 404
    context.close()

    # The owner: the failure's code and message, the API's own
    context, page = signed_in(chromium, stack, alice)
    page.goto(stack.url + f"/runs/{run_id}")
    assert page.locator("#failure-code").inner_text() == failed["failure"]["code"]
    assert page.locator("#failure-message").inner_text() == failed["failure"]["message"]
    accessible(page, "run-failed")
    context.close()

    # A manager: the create form and every run
    context, page = signed_in(chromium, stack, admin)
    page.goto(stack.url + "/manage")
    assert page.get_by_role("table").locator("tbody tr", has_text=run_id[:8]).count() == 1
    accessible(page, "manage")
    context.close()
