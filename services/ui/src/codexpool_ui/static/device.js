// Finishes a device-code login by itself: posts the page's own form (with its CSRF token) in
// the background every interval until the login is approved, then follows the answer.
// Plain JS, no dependencies (the page's CSP allows only same-origin scripts).
(function () {
  "use strict";
  var form = document.querySelector("form[data-device-poll]");
  if (!form) { return; }
  var interval = (parseInt(form.getAttribute("data-interval-s"), 10) || 5) * 1000;
  var status = document.querySelector("[data-testid='device-status']");

  function tick() {
    if (document.hidden) { window.setTimeout(tick, interval); return; }
    fetch(form.action, { method: "POST", body: new FormData(form), credentials: "same-origin", cache: "no-store" })
      .then(function (response) {
        if (response.redirected) { window.location.assign(response.url); return; }
        if (response.status === 202) {
          if (status) { status.textContent = "Not approved yet: waiting for the code to be entered…"; }
          window.setTimeout(tick, interval);
          return;
        }
        // Anything else (expired, refused, signed out) is shown by the page the form leads to.
        form.submit();
      })
      .catch(function () {
        if (status) { status.textContent = "The UI did not answer; retrying."; }
        window.setTimeout(tick, interval * 2);
      });
  }

  window.setTimeout(tick, interval);
})();
