// Live refresh of the saga timeline page: every 2 s, fetch this same page and swap the part
// marked #live. The HTML comes from the server, which escapes everything it renders; the
// filters form sits outside #live, so typing in it is never interrupted.
(function () {
  "use strict";
  var PERIOD_MS = 2000;
  var parser = new DOMParser();

  function stamp(text) {
    var where = document.getElementById("refreshed");
    if (where) where.textContent = text;
  }

  async function refresh() {
    if (document.hidden) return;
    try {
      var response = await fetch(window.location.href, { cache: "no-store" });
      if (!response.ok) {
        stamp("refresh failed: HTTP " + response.status);
        return;
      }
      var fresh = parser.parseFromString(await response.text(), "text/html");
      var incoming = fresh.getElementById("live");
      var current = document.getElementById("live");
      if (incoming && current) current.replaceChildren.apply(current, Array.from(incoming.childNodes));
      stamp("refreshed " + new Date().toLocaleTimeString());
    } catch (error) {
      stamp("refresh failed: " + error);
    }
  }

  // A saga's page: the operator's retry and cancel buttons POST to the JSON API with the token
  // typed into the form (kept nowhere else), then show the answer and refresh.
  async function act(form, action) {
    var answer = document.getElementById("operator-answer");
    var headers = { Authorization: "Bearer " + form.elements.token.value };
    if (form.elements.actor.value) headers["X-Sagaline-Actor"] = form.elements.actor.value;
    try {
      var url = "../../sagas/" + encodeURIComponent(form.dataset.saga) + "/" + action;
      var response = await fetch(url, { method: "POST", headers: headers, cache: "no-store" });
      var body = await response.json();
      var detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
      answer.textContent = response.ok
        ? action + " accepted: " + body.status
        : action + " refused (HTTP " + response.status + "): " + detail;
      answer.dataset.code = String(response.status);
    } catch (error) {
      answer.textContent = action + " failed: " + error;
      answer.dataset.code = "error";
    }
    await refresh();
  }

  var operator = document.getElementById("operator");
  if (operator) {
    operator.addEventListener("click", function (event) {
      var action = event.target.dataset ? event.target.dataset.action : null;
      if (action) act(operator, action);
    });
    operator.addEventListener("submit", function (event) { event.preventDefault(); });
  }

  window.setInterval(refresh, PERIOD_MS);
})();
