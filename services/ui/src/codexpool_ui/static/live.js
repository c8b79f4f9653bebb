// Keeps the pool page's activity table live: polls the UI's /live fragment and swaps it in.
// Plain JS, no build step, no dependencies (the page's CSP allows only same-origin scripts).
(function () {
  "use strict";
  var root = document.querySelector("[data-live-url]");
  if (!root) { return; }
  var url = root.getAttribute("data-live-url");
  var interval = parseInt(root.getAttribute("data-live-interval-ms"), 10) || 2500;
  var status = document.querySelector("[data-testid='live-status']");

  function say(text) { if (status) { status.textContent = text; } }

  function swap(html) {
    // Keep what the reader is doing: open health breakdowns and the focused button survive.
    var open = Array.prototype.map.call(root.querySelectorAll("details[open]"), function (d) { return d.id; });
    var focused = document.activeElement && root.contains(document.activeElement)
      ? document.activeElement.getAttribute("data-testid") : null;
    root.innerHTML = html;
    open.forEach(function (id) { var d = document.getElementById(id); if (d) { d.open = true; } });
    if (focused) {
      var again = root.querySelector("[data-testid='" + focused + "']");
      if (again) { again.focus(); }
    }
  }

  function tick() {
    if (document.hidden) { window.setTimeout(tick, interval); return; }
    fetch(url, { credentials: "same-origin", cache: "no-store", headers: { "Accept": "text/html" } })
      .then(function (response) {
        if (response.status === 401) {
          window.location.assign("/login?notice=expired");
          return null;
        }
        if (!response.ok) { throw new Error("the UI answered " + response.status); }
        return response.text();
      })
      .then(function (html) {
        if (html !== null) { swap(html); say(""); }
        window.setTimeout(tick, interval);
      })
      .catch(function (err) {
        say("Live updates paused: " + err.message + "; retrying.");
        window.setTimeout(tick, interval * 2);
      });
  }

  window.setTimeout(tick, interval);
})();
