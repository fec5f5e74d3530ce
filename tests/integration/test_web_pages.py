"""The web pages over falcon's TestClient on real PostgreSQL and S3: sessions, CSRF, visibility, escaping."""

from __future__ import annotations

import re

import pytest

from evaluator.storage.models import Benchmark, Dataset, Run, Submission, WebSession
from evaluator.tokens import create_token

pytestmark = pytest.mark.integration


def csrf_of(page) -> str:
    return re.search(r'name="csrf-token" content="([^"]+)"', page.text).group(1)


def cookies_of(response) -> dict:
    return {name: cookie.value for name, cookie in response.cookies.items()}


def sign_in(api, secret: str) -> dict:
    """Sign in through the form; returns the browser's cookies (the session's)."""
    form = api.simulate_get("/session")
    jar = cookies_of(form)
    response = api.simulate_post("/session", params=None, body=f"csrf_token={csrf_of(form)}&token={secret}",
                                 headers={"Content-Type": "application/x-www-form-urlencoded",
                                          "Cookie": "; ".join(f"{k}={v}" for k, v in jar.items())})
    assert response.status_code == 303, response.text
    return cookies_of(response)


def cookie_header(jar: dict) -> dict:
    return {"Cookie": "; ".join(f"{k}={v}" for k, v in jar.items() if v)}


@pytest.fixture
def world(db):
    """Two benchmarks (public, private), alice's and bob's runs; returns their ids."""
    dataset = Dataset.create(name="iris", version="1", features_key="f", labels_key="l", status="ready", row_count=150)
    Benchmark.create(id="open-b", title="Open <b>bench</b>", dataset=dataset, task="classification",
                     primary_metric="accuracy", direction="maximize", owner="olga", visibility="public")
    Benchmark.create(id="hidden-b", title="Hidden", dataset=dataset, task="classification",
                     primary_metric="accuracy", direction="maximize", owner="olga", visibility="private")
    runs = {}
    for owner in ("alice", "bob"):
        submission = Submission.create(benchmark="open-b", owner=owner, name="m", version="1", bucket="x",
                                       object_key=f"bundles/open-b/{owner}/m/1/x.tar.gz", status="uploaded")
        runs[owner] = Run.create(submission=submission, benchmark="open-b", owner=owner, status="failed",
                                 failure_code="predictions_invalid",
                                 failure_message="row <script>alert(1)</script> is missing")
    return {owner: str(run.id) for owner, run in runs.items()}


def test_anonymous_home_lists_public_benchmarks_only_and_escapes_titles(api, world):
    page = api.simulate_get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "Open &lt;b&gt;bench&lt;/b&gt;" in page.text and "<b>bench" not in page.text
    assert "hidden-b" not in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]


def test_unknown_page_is_an_html_404_and_the_api_keeps_json(api, db):
    page = api.simulate_get("/nowhere", headers={"Accept": "text/html"})
    assert page.status_code == 404 and "<h1>404" in page.text
    assert api.simulate_get("/v1/nowhere").json["error"]["code"] == "not_found"


def test_sign_in_sets_a_strict_http_only_cookie_and_sign_out_revokes_it(api, world):
    secret, _ = create_token("alice", "participant")
    form = api.simulate_get("/session")
    response = api.simulate_post("/session", body=f"csrf_token={csrf_of(form)}&token={secret}",
                                 headers={"Content-Type": "application/x-www-form-urlencoded",
                                          **cookie_header(cookies_of(form))})
    assert response.status_code == 303
    cookie = response.cookies["evaluator_session"]
    assert cookie.http_only and cookie.same_site.lower() == "strict" and not cookie.secure
    jar = {"evaluator_session": cookie.value}
    mine = api.simulate_get(f"/runs/{world['alice']}", headers=cookie_header(jar))
    assert mine.status_code == 200 and "predictions_invalid" in mine.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in mine.text and "<script>alert" not in mine.text
    # Another participant's run is a 404 page, as GET /v1/runs/{id} is a 404
    theirs = api.simulate_get(f"/runs/{world['bob']}", headers=cookie_header(jar))
    assert theirs.status_code == 404 and "<h1>404" in theirs.text
    # Signing out without the CSRF token is refused; with it, the session row is revoked
    refused = api.simulate_post("/session/end", headers={**cookie_header(jar),
                                                         "Content-Type": "application/x-www-form-urlencoded"})
    assert refused.status_code == 403 and "CSRF" in refused.text
    out = api.simulate_post("/session/end", body=f"csrf_token={csrf_of(mine)}",
                            headers={**cookie_header(jar), "Content-Type": "application/x-www-form-urlencoded"})
    assert out.status_code == 303 and WebSession.get().revoked_at is not None
    assert api.simulate_get(f"/runs/{world['alice']}", headers=cookie_header(jar)).status_code == 401


def test_secure_cookie_behind_tls(api, world):
    secret, _ = create_token("alice", "participant")
    form = api.simulate_get("/session")
    response = api.simulate_post("/session", body=f"csrf_token={csrf_of(form)}&token={secret}",
                                 headers={"Content-Type": "application/x-www-form-urlencoded",
                                          "X-Forwarded-Proto": "https", **cookie_header(cookies_of(form))})
    assert response.cookies["evaluator_session"].secure


def test_sign_in_without_the_forms_csrf_token_is_refused(api, world):
    secret, _ = create_token("alice", "participant")
    response = api.simulate_post("/session", body=f"token={secret}",
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 403 and "evaluator_session" not in response.cookies
