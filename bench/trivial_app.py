"""The baseline of bench/grant_issuance.py: a Falcon app answering one small JSON document."""

import falcon


class Ping:
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.bounded_stream.read()
        resp.status = falcon.HTTP_201
        resp.media = {"ok": True}


app = falcon.App()
app.add_route("/ping", Ping())
