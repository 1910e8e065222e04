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

  window.setInterval(refresh, PERIOD_MS);
})();
