// Follow a run that has not ended: poll the JSON API (GET /v1/runs/{id}, the session cookie signs it in)
// and reload the page once it ends, so its metrics, failure and log appear without the visitor reloading.
(function () {
  "use strict";
  var status = document.getElementById("run-status");
  if (!status || status.dataset.ended === "true") { return; }
  var runId = status.dataset.run;
  function poll() {
    fetch("/v1/runs/" + encodeURIComponent(runId), {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (run) {
        if (run && run.status !== status.textContent) {
          status.textContent = run.status;
          status.className = "status status-" + run.status;
        }
        if (run && ["succeeded", "failed", "cancelled", "timed_out"].indexOf(run.status) >= 0) {
          window.location.reload();
          return;
        }
        window.setTimeout(poll, 1000);
      })
      .catch(function () { window.setTimeout(poll, 3000); });
  }
  window.setTimeout(poll, 1000);
})();
