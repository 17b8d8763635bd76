// flowctl console: regions marked data-refresh="URL" are fetched again every 2 s and swapped in
// (the server renders the region alone for ?fragment=1). Nothing is fetched while the tab is
// hidden; a failed fetch (the daemon restarting, the session ended) leaves the region as it was.
(function () {
  "use strict";
  var PERIOD = 2000;
  var busy = false;

  function swap(region) {
    return fetch(region.getAttribute("data-refresh"), {
      credentials: "same-origin",
      redirect: "error",
      headers: { "Accept": "text/html" }
    }).then(function (response) {
      if (!response.ok) { throw new Error("HTTP " + response.status); }
      return response.text();
    }).then(function (html) {
      var doc = new DOMParser().parseFromString(html, "text/html");
      var fresh = doc.getElementById(region.id);
      if (fresh && document.body.contains(region)) {
        region.replaceWith(document.importNode(fresh, true));
      }
    });
  }

  function refresh() {
    if (busy || document.visibilityState !== "visible") { return; }
    var regions = Array.prototype.slice.call(document.querySelectorAll("[data-refresh][id]"));
    if (!regions.length) { return; }
    busy = true;
    Promise.all(regions.map(function (r) { return swap(r).catch(function () {}); }))
      .then(function () { busy = false; });
  }

  setInterval(refresh, PERIOD);
  document.addEventListener("visibilitychange", refresh);
})();
