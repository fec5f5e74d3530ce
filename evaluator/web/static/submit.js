// The /me submit form: ask the JSON API for a presigned POST grant (the session cookie signs the request in,
// the page's CSRF token goes in X-CSRF-Token), upload the bundle from the browser straight to the store with
// a progress bar (the bytes never pass through the API), then follow the run by polling the JSON API.
(function () {
  "use strict";
  var form = document.getElementById("submit-form");
  if (!form) { return; }
  var csrf = document.querySelector('meta[name="csrf-token"]').getAttribute("content");
  var box = document.getElementById("submit-progress");
  var bar = document.getElementById("upload-bar");
  var text = document.getElementById("upload-text");
  var live = document.getElementById("live-status");
  var link = document.getElementById("live-link");
  var failure = document.getElementById("live-failure");
  var button = document.getElementById("submit-button");
  var ENDED = ["succeeded", "failed", "cancelled", "timed_out"];

  function show(status) {
    live.textContent = status;
    live.className = "status status-" + status.replace(/[^a-z_]/g, "");
  }

  function problem(message) {
    failure.hidden = false;
    failure.textContent = message;
    button.disabled = false;
  }

  function api(method, path, body) {
    var options = {method: method, credentials: "same-origin", headers: {"Accept": "application/json"}};
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.headers["X-CSRF-Token"] = csrf;
      options.body = JSON.stringify(body);
    }
    return fetch(path, options).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (data) {
        if (!response.ok) {
          var error = (data && data.error) || {};
          throw new Error((error.code || response.status) + ": " + (error.message || "the request failed"));
        }
        return data;
      });
    });
  }

  function followRun(runId) {
    link.href = "/runs/" + encodeURIComponent(runId);
    link.hidden = false;
    api("GET", "/v1/runs/" + encodeURIComponent(runId)).then(function (run) {
      show(run.status);
      if (ENDED.indexOf(run.status) < 0) { window.setTimeout(function () { followRun(runId); }, 1000); return; }
      button.disabled = false;
      if (run.failure) { problem(run.failure.code + ": " + run.failure.message); }
    }).catch(function () { window.setTimeout(function () { followRun(runId); }, 3000); });
  }

  function waitForRun(submissionId) {
    api("GET", "/v1/submissions/" + encodeURIComponent(submissionId)).then(function (submission) {
      if (submission.runs && submission.runs.length) { followRun(submission.runs[0].id); return; }
      show(submission.status === "rejected" ? "rejected" : "waiting for the store's upload event");
      if (submission.status === "rejected") { problem("the upload was refused; see My runs"); return; }
      window.setTimeout(function () { waitForRun(submissionId); }, 1000);
    }).catch(function () { window.setTimeout(function () { waitForRun(submissionId); }, 3000); });
  }

  function upload(grant, file, submissionId) {
    var data = new FormData();
    Object.keys(grant.fields).forEach(function (name) { data.append(name, grant.fields[name]); });
    data.append("file", file);  // NOTE: the file goes last: the store ignores fields after it
    var xhr = new XMLHttpRequest();
    xhr.open("POST", grant.url);
    xhr.upload.addEventListener("progress", function (event) {
      if (!event.lengthComputable) { return; }
      bar.dataset.updates = String(Number(bar.dataset.updates || 0) + 1);
      var percent = Math.floor(100 * event.loaded / event.total);
      bar.value = percent;
      bar.textContent = percent + "%";
      text.textContent = "Uploaded " + percent + "% (" + event.loaded + " of " + event.total + " bytes)";
    });
    xhr.addEventListener("load", function () {
      if (xhr.status >= 200 && xhr.status < 300) {
        bar.value = 100;
        text.textContent = "Upload complete (" + file.size + " bytes)";
        show("queued");
        waitForRun(submissionId);
      } else {
        var code = /<Code>([^<]{1,80})<\/Code>/.exec(xhr.responseText || "");
        problem("the store refused the upload (HTTP " + xhr.status + (code ? ", " + code[1] : "") + ")");
      }
    });
    xhr.addEventListener("error", function () { problem("the upload did not reach the store (network or CORS)"); });
    xhr.send(data);
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var file = document.getElementById("submit-file").files[0];
    if (!file) { problem("choose a bundle file first"); return; }
    failure.hidden = true;
    box.hidden = false;
    button.disabled = true;
    bar.value = 0;
    text.textContent = "Asking for an upload grant";
    show("waiting for the upload");
    var benchmark = document.getElementById("submit-benchmark").value;
    api("POST", "/v1/benchmarks/" + encodeURIComponent(benchmark) + "/submissions", {
      name: document.getElementById("submit-name").value, version: document.getElementById("submit-version").value,
      filename: file.name, size: file.size, method: "post"
    }).then(function (created) {
      upload(created.upload, file, created.submission.id);
    }).catch(function (error) { problem(error.message); });
  });
})();
