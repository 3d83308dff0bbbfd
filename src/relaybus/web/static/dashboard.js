// relaybus dashboard: live refresh (pausable, paused while the tab is hidden or jobs are
// selected) and "select all". No inline scripts: the page's CSP allows this file only.
(function () {
  "use strict";
  var KEY = "relaybus.live.paused";
  function paused() { return window.localStorage.getItem(KEY) === "1"; }
  function label() {
    var button = document.getElementById("live-toggle");
    if (button) { button.textContent = paused() ? "Resume live updates" : "Pause live updates"; }
    var state = document.getElementById("live-state");
    if (state) { state.textContent = paused() ? "paused" : "live"; }
  }
  function selecting() {
    return document.querySelector("input[name=ids]:checked") !== null;
  }
  function refresh() {
    var live = document.getElementById("live");
    if (!live || paused() || document.hidden || selecting() || !window.htmx) { return; }
    window.htmx.ajax("GET", window.location.href, { target: "#live", select: "#live",
                                                    swap: "outerHTML" });
  }
  document.addEventListener("DOMContentLoaded", function () {
    label();
    var button = document.getElementById("live-toggle");
    if (button) {
      button.addEventListener("click", function () {
        window.localStorage.setItem(KEY, paused() ? "0" : "1");
        label();
      });
    }
    var seconds = parseFloat(document.body.getAttribute("data-refresh") || "5");
    if (document.getElementById("live")) { window.setInterval(refresh, seconds * 1000); }
    document.addEventListener("change", function (event) {
      var target = event.target;
      if (target && target.id === "select-all") {
        document.querySelectorAll("input[name=ids]").forEach(function (box) {
          box.checked = target.checked;
        });
      }
    });
    document.addEventListener("submit", function (event) {
      var form = event.target;
      var question = form && form.getAttribute("data-confirm");
      if (question && !window.confirm(question)) { event.preventDefault(); }
    });
  });
})();
