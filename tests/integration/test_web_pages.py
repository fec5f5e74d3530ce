"""The web pages over falcon's TestClient on real PostgreSQL and S3: sessions, CSRF, visibility, escaping."""

from __future__ import annotations

import re

import pytest

from evaluator.storage.models import Benchmark, Dataset, Run, Submission, WebSession
from evaluator.tokens import create_token

pytestmark = pytest.mark.integration

# The pages' authorization table (tests/integration/test_authorization.py checks that every route has a case):
# (method, route) -> how another participant (bob, signed in) is answered for alice's object.
PAGE_CASES = {
    ("GET", "/runs/{run_id}"): 404,
    ("GET", "/runs/{run_id}/predictions"): 404,
    ("GET", "/benchmarks/{benchmark_id}"): 404,  # alice's private benchmark
    ("POST", "/benchmarks/{benchmark_id}/rescore"): 404,
}
PAGES_WITHOUT_ID = {
    ("GET", "/"): "visible benchmarks", ("GET", "/me"): "own runs", ("GET", "/session"): "anyone",
    ("POST", "/session"): "anyone with a token", ("POST", "/session/end"): "the session itself",
    ("GET", "/manage"): "publishers", ("POST", "/manage/benchmarks"): "publishers",
    ("GET", "/static/{asset}"): "anyone",
}


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


HTML = {"Accept": "text/html,application/xhtml+xml"}  # what a browser sends: errors come back as pages


def cookie_header(jar: dict) -> dict:
    return {"Cookie": "; ".join(f"{k}={v}" for k, v in jar.items() if v), **HTML}


@pytest.fixture
def world(db):
    """Two benchmarks (public, private), alice's and bob's runs; returns their ids."""
    dataset = Dataset.create(name="iris", version="1", features_key="f", labels_key="l", status="ready", row_count=150,
                             owner="olga")
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


def signed_in(api, owner: str, role: str) -> dict:
    secret, _ = create_token(owner, role)
    return cookie_header(sign_in(api, secret))


def scored(world, owner: str, accuracy: float, ci: list[float]) -> None:
    interval = {"low": ci[0], "high": ci[1], "level": 0.95, "rounds": 1000, "seed": 0, "method": "rows"}
    primary = {"name": "accuracy", "value": accuracy, "direction": "maximize", "ci": interval}
    document = {"metrics": {"accuracy": accuracy}, "primary_metric": primary}
    Run.update(status="succeeded", failure_code=None, failure_message=None, finished_at=Run.created_at,
               metrics=document, results_prefix=f"results/open-b/{world[owner]}/").where(
        Run.id == world[owner]).execute()


def test_benchmark_page_shows_the_apis_leaderboard_rounded_with_equal_ranks_and_ci_bars(api, world):
    scored(world, "alice", 0.912345678, [0.88, 0.94])
    scored(world, "bob", 0.912345678, [0.87, 0.95])
    board = api.simulate_get("/v1/benchmarks/open-b/leaderboard").json
    page = api.simulate_get("/benchmarks/open-b")
    assert page.status_code == 200
    rows = re.findall(r'<tr[^>]*>\s*<td class="num">(\d+)</td>\s*<th scope="row">(\w+)', page.text)
    assert rows == [(str(e["rank"]), e["participant"]) for e in board["entries"]] and rows[0][0] == rows[1][0] == "1"
    assert str(board["entries"][0]["score"]) == "0.9123" and "0.9123" in page.text and "0.912345" not in page.text
    assert page.text.count('<svg class="ci"') == 2 and 'aria-label="95% CI 0.88 to 0.94"' in page.text
    # A private benchmark is a 404 page to the anonymous visitor, as the API's 404
    assert api.simulate_get("/benchmarks/hidden-b").json["error"]["code"] == "not_found"  # no Accept: JSON
    hidden = api.simulate_get("/benchmarks/hidden-b", headers=HTML)
    assert hidden.status_code == 404 and "<h1>404" in hidden.text
    assert api.simulate_get("/v1/benchmarks/hidden-b/leaderboard").status_code == 404


def test_managers_see_exact_values_and_rescore_with_the_csrf_token(api, world, sent):
    scored(world, "alice", 0.912345678, [0.88, 0.94])
    olga = signed_in(api, "olga", "owner")
    page = api.simulate_get("/benchmarks/open-b", headers=olga)
    assert "0.912346" in page.text and "Re-score" in page.text
    form = {"Content-Type": "application/x-www-form-urlencoded", **olga}
    assert api.simulate_post("/benchmarks/open-b/rescore", headers=form).status_code == 403
    assert sent.rescores == []
    done = api.simulate_post("/benchmarks/open-b/rescore", body=f"csrf_token={csrf_of(page)}", headers=form)
    assert done.status_code == 303 and sent.rescores == [world["alice"]]
    # A participant's rescore is the API's 403
    alice = signed_in(api, "alice", "participant")
    alice_page = api.simulate_get("/benchmarks/open-b", headers=alice)
    refused = api.simulate_post("/benchmarks/open-b/rescore", body=f"csrf_token={csrf_of(alice_page)}",
                                headers={"Content-Type": "application/x-www-form-urlencoded", **alice})
    assert refused.status_code == 403 and "Re-score" not in alice_page.text


def test_the_json_api_takes_the_session_cookie_only_with_the_csrf_header_on_unsafe_requests(api, world):
    alice = signed_in(api, "alice", "participant")
    assert api.simulate_get(f"/v1/runs/{world['alice']}", headers=alice).json["owner"] == "alice"
    body = {"name": "m2", "filename": "b.tar.gz", "size": 10, "method": "post"}
    refused = api.simulate_post("/v1/benchmarks/open-b/submissions", json=body, headers=alice)
    assert refused.status_code == 403 and refused.json["error"]["code"] == "forbidden"
    token = csrf_of(api.simulate_get("/me", headers=alice))
    granted = api.simulate_post("/v1/benchmarks/open-b/submissions", json=body,
                                headers={**alice, "X-CSRF-Token": token})
    assert granted.status_code == 201 and granted.json["upload"]["fields"]


def test_me_page_lists_my_runs_quotas_and_the_submit_form(api, world):
    scored(world, "alice", 0.9, [0.8, 0.95])
    alice = signed_in(api, "alice", "participant")
    page = api.simulate_get("/me", headers=alice)
    assert page.status_code == 200
    assert world["alice"][:8] in page.text and world["bob"][:8] not in page.text
    assert 'id="submit-form"' in page.text and "/static/submit.js" in page.text
    assert re.search(r"<label for=\"submit-file\">", page.text)
    assert api.simulate_get("/me").status_code == 401
    assert api.simulate_get("/static/submit.js").headers["content-type"].startswith("application/javascript")
    assert api.simulate_get("/static/..%2Fpages.py").status_code == 404


def test_manage_page_creates_a_benchmark_through_the_apis_validation(api, world):
    admin = signed_in(api, "root", "admin")
    page = api.simulate_get("/manage", headers=admin)
    assert page.status_code == 200 and "iris:1" in page.text
    form = {"Content-Type": "application/x-www-form-urlencoded", **admin}
    bad = api.simulate_post("/manage/benchmarks", headers=form,
                            body=f"csrf_token={csrf_of(page)}&id=..%2Fx&dataset=iris:1&task=classification")
    assert bad.status_code == 422 and "&#39;id&#39;" in bad.text and 'aria-invalid="true"' in bad.text
    made = api.simulate_post("/manage/benchmarks", headers=form,
                             body=f"csrf_token={csrf_of(page)}&id=new-b&title=New&dataset=iris:1&task=classification"
                                  "&visibility=public&quota_limit=3")
    assert made.status_code == 303 and made.headers["location"] == "/benchmarks/new-b"
    assert api.simulate_get("/v1/benchmarks/new-b").json["quota"]["limit"] == 3
    participant = signed_in(api, "alice", "participant")
    assert api.simulate_get("/manage", headers=participant).status_code == 403


@pytest.mark.parametrize("method, route", sorted(PAGE_CASES))
def test_another_participant_gets_the_apis_answer_for_a_participants_object(api, world, method, route):
    Benchmark.update(owner="alice").where(Benchmark.id == "hidden-b").execute()
    ids = {"run_id": world["alice"], "benchmark_id": "hidden-b"}
    bob, alice = signed_in(api, "bob", "participant"), signed_in(api, "alice", "participant")
    for jar in (bob, alice):
        token = csrf_of(api.simulate_get("/", headers=jar))
        response = api.simulate_request(method, route.format(**ids), body=f"csrf_token={token}",
                                        headers={**jar, "Content-Type": "application/x-www-form-urlencoded"})
        if jar is bob:
            assert response.status_code == PAGE_CASES[(method, route)], response.text
            assert "<h1>404" in response.text and "not_found" in response.text
        else:  # the owner reaches it (a failed run has no predictions: the API's "no ..." 404; a re-score of
            # a dataset she did not register: the API's 403)
            assert response.status_code != 404 or "has no" in response.text, response.text
