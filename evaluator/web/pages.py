"""Page resources: parse, call the plain function the JSON resource calls, render a template.

Each page is an `@operation` (tag "pages") so /openapi.json lists it; `auth = "session"`
makes middleware.SessionAuth resolve the visitor from the session cookie, and `page = True`
turns errors into error pages with the API's code and message.
"""

from __future__ import annotations

import functools
import importlib.resources

import falcon

from evaluator import benchmarks, row_store
from evaluator.api import hooks
from evaluator.api.operations import HTML, PAGE, Access, Media, operation, validated
from evaluator.api.runs import predictions_url
from evaluator.config import Config
from evaluator.contract import inputs
from evaluator.errors import NotFound, Unauthorized, ValidationFailed
from evaluator.intake import Queues
from evaluator.runs import get_run
from evaluator.storage.blobs import BlobStore
from evaluator.web import sessions, views
from evaluator.web.render import render

STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "application/javascript; charset=utf-8",
                ".svg": "image/svg+xml", ".png": "image/png", ".ico": "image/x-icon"}
MANAGERS = Access([{"session": []}], hooks.role("admin", "owner"), (401, 403))  # the API's roles("admin", "owner")
STATIC_MEDIA = Media(tuple(dict.fromkeys(t.split(";")[0] for t in STATIC_TYPES.values())), {"type": "string"})


class Page:
    """A web page: the visitor comes from the session cookie; errors render as pages."""

    auth = "session"
    page = True

    def __init__(self, config: Config, blobs: BlobStore, queues: Queues) -> None:
        self._config = config
        self._blobs = blobs
        self._queues = queues


def _principal(req: falcon.Request):
    return req.context.principal


def _signed_in(req: falcon.Request):
    """The visitor's principal; 401 (the sign-in page) when nobody is signed in, as the API answers."""
    if req.context.principal is None:
        raise Unauthorized("sign in with an API token to see this page")
    return req.context.principal


class Home(Page):
    @operation("pageHome", "Web page: the benchmarks the visitor may see", tag="pages", access=PAGE,
               responses={200: HTML})
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        render(req, resp, "index.html", benchmarks=views.benchmark_rows(_principal(req)))


class RunPage(Page):
    @operation("pageRun", "Web page: one run (status, timeline, metrics, failure, log, provenance)", tag="pages",
               access=PAGE, responses={200: HTML}, errors=(401, 404))
    def on_get(self, req: falcon.Request, resp: falcon.Response, run_id: str) -> None:
        run = get_run(run_id, _signed_in(req))
        context = views.run_page(run, req.context.principal, config=self._config, blobs=self._blobs)
        render(req, resp, "run.html", **context)

    @operation("pageRunPredictions", "Web page link: a redirect to a short-lived presigned GET of the predictions",
               tag="pages", access=PAGE, responses={303: HTML}, errors=(401, 404, 503))
    def on_get_predictions(self, req: falcon.Request, resp: falcon.Response, run_id: str) -> None:
        run = get_run(run_id, _signed_in(req))
        _see_other(resp, predictions_url(run, self._config, self._blobs))


def _page_number(req: falcon.Request) -> int:
    raw = req.get_param("page") or "1"
    return int(raw) if raw.isdigit() and len(raw) < 7 else 1


class BenchmarkPage(Page):
    @operation("pageBenchmark", "Web page: a benchmark's rules and leaderboard (?view=private for managers)",
               tag="pages", access=PAGE, responses={200: HTML}, errors=(404,))
    def on_get(self, req: falcon.Request, resp: falcon.Response, benchmark_id: str) -> None:
        context = views.benchmark_page(benchmark_id, req.context.principal, view=req.get_param("view"),
                                       page=_page_number(req), rows=row_store.shared(self._blobs, self._config))
        render(req, resp, "benchmark.html", notice=req.get_param("queued"), **context)

    @operation("pageRescore", "Web form: re-score every succeeded run of the benchmark (managers)", tag="pages",
               access=PAGE, responses={303: HTML}, errors=(401, 403, 404))
    def on_post_rescore(self, req: falcon.Request, resp: falcon.Response, benchmark_id: str) -> None:
        queued = benchmarks.rescore_benchmark(benchmark_id, _signed_in(req), self._queues.rescore_run)
        _see_other(resp, f"/benchmarks/{benchmark_id}?queued={len(queued)}")


class MePage(Page):
    @operation("pageMe", "Web page: my runs and submissions, my quotas, the browser submit form", tag="pages",
               access=PAGE, responses={200: HTML}, errors=(401,))
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        context = views.me_page(_signed_in(req), page=_page_number(req))
        render(req, resp, "me.html", connect=" ".join(_origin(self._config.presign_endpoint_url)), **context)


def _origin(url: str) -> list[str]:
    scheme, _, rest = url.partition("://")
    return [f"{scheme}://{rest.split('/', 1)[0]}"] if rest else []


class ManagePage(Page):
    @operation("pageManage", "Web page for managers: create a benchmark, every run", tag="pages",
               access=MANAGERS, responses={200: HTML})
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        context = views.manage_page(req.context.principal, benchmark=req.get_param("benchmark"),
                                    status=req.get_param("status"), page=_page_number(req))
        render(req, resp, "manage.html", form={}, problem=None, **context)

    @operation("pageCreateBenchmark", "Web form: create a benchmark over a ready dataset (admin or owner)",
               tag="pages", access=MANAGERS, responses={303: HTML, 422: HTML}, errors=(409,))
    def on_post_benchmarks(self, req: falcon.Request, resp: falcon.Response) -> None:
        form = req.context.form
        try:
            body = validated(inputs.BenchmarkIn, views.benchmark_body(form)).model_dump(exclude_unset=True)
            benchmark = benchmarks.create_benchmark(body, req.context.principal, config=self._config)
        except ValidationFailed as ex:  # the form again, with the API's message next to the field
            context = views.manage_page(req.context.principal, benchmark=None, status=None, page=1)
            render(req, resp, "manage.html", status=422, form=form, problem=ex.to_dict(), **context)
            return
        _see_other(resp, f"/benchmarks/{benchmark.id}")


class SessionPage(Page):
    @operation("pageSession", "Web page: sign in with an API token (or see who is signed in)", tag="pages",
               access=PAGE, responses={200: HTML})
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        render(req, resp, "session.html", next=_next(req.get_param("next")))

    @operation("signIn", "Sign in: exchange an API token (form field `token`) for a session cookie", tag="pages",
               access=PAGE, responses={303: HTML}, errors=(401, 403))
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        secret, session = sessions.sign_in(req.context.form.get("token", ""), self._config.session_ttl_s)
        sessions.set_cookie(req, resp, sessions.COOKIE, secret, self._config.session_ttl_s)
        sessions.clear_cookie(req, resp, sessions.CSRF_COOKIE)
        _see_other(resp, _next(req.context.form.get("next")) or "/me")

    @operation("signOut", "Sign out: revoke this session on the server and clear its cookie", tag="pages",
               access=PAGE, responses={303: HTML}, errors=(403,))
    def on_post_end(self, req: falcon.Request, resp: falcon.Response) -> None:
        if req.context.session is not None:
            sessions.sign_out(req.context.session.id)
        sessions.clear_cookie(req, resp, sessions.COOKIE)
        _see_other(resp, "/")


def _next(target: str | None) -> str:
    """Only a path of this site (never `//host` or a scheme): sign-in must not redirect anywhere else."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target or len(target) > 500:
        return ""
    return target


def _see_other(resp: falcon.Response, location: str) -> None:
    resp.status, resp.location = falcon.HTTP_303, location
    resp.content_type, resp.text = "text/html; charset=utf-8", ""


@functools.lru_cache(maxsize=64)
def _static(name: str) -> bytes | None:
    folder = importlib.resources.files("evaluator.web").joinpath("static")
    names = {entry.name for entry in folder.iterdir() if entry.is_file()}
    return folder.joinpath(name).read_bytes() if name in names else None  # NOTE: a listed name, never a path


class Static:
    """The pages' style sheet and scripts, served by this app (no CDN)."""

    auth = "none"

    @operation("getStatic", "A style sheet or script of the web pages", tag="pages", access=PAGE,
               responses={200: STATIC_MEDIA}, errors=(404,))
    def on_get(self, req: falcon.Request, resp: falcon.Response, asset: str) -> None:
        suffix = asset[asset.rfind("."):] if "." in asset else ""
        data = _static(asset) if suffix in STATIC_TYPES and "/" not in asset else None
        if data is None:
            raise NotFound(f"no static file {asset[:100]!r}")
        resp.content_type, resp.data = STATIC_TYPES[suffix], data
        resp.set_header("X-Content-Type-Options", "nosniff")
        resp.cache_control = ["public", "max-age=3600"]


def register(app: falcon.App, config: Config, blobs: BlobStore, queues: Queues) -> None:
    """Add the pages' routes to the API's app (same middleware, same access rules)."""
    app.add_route("/", Home(config, blobs, queues))
    run_page = RunPage(config, blobs, queues)
    app.add_route("/runs/{run_id}", run_page)
    app.add_route("/runs/{run_id}/predictions", run_page, suffix="predictions")
    benchmark_page = BenchmarkPage(config, blobs, queues)
    app.add_route("/benchmarks/{benchmark_id}", benchmark_page)
    app.add_route("/benchmarks/{benchmark_id}/rescore", benchmark_page, suffix="rescore")
    app.add_route("/me", MePage(config, blobs, queues))
    manage = ManagePage(config, blobs, queues)
    app.add_route("/manage", manage)
    app.add_route("/manage/benchmarks", manage, suffix="benchmarks")
    session = SessionPage(config, blobs, queues)
    app.add_route("/session", session)
    app.add_route("/session/end", session, suffix="end")
    app.add_route("/static/{asset}", Static())
