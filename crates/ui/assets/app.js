// Switchboard dashboard: the little the pages do in the browser (no inline
// scripts: the Content-Security-Policy allows scripts from this server only).
// Everything here is progressive: the pages work without it.
(function () {
  "use strict";

  // Registration expiry countdown: each [data-expires-in] counts down from
  // the moment it was first seen (htmx swaps in fresh values every few s).
  var seen = new WeakMap();
  function tick() {
    var now = Date.now();
    document.querySelectorAll("[data-expires-in]").forEach(function (el) {
      if (!seen.has(el)) seen.set(el, now);
      var left = Number(el.getAttribute("data-expires-in")) - Math.floor((now - seen.get(el)) / 1000);
      left = Math.max(0, left);
      var m = Math.floor(left / 60), s = left % 60;
      el.textContent = (m > 0 ? m + " min " : "") + s + " s";
    });
  }
  setInterval(tick, 1000);
  document.addEventListener("DOMContentLoaded", tick);

  // The drain dialog: a link [data-drain-name] opens it for its manager
  // (without JavaScript the link leads to the same form on a page).
  document.addEventListener("click", function (ev) {
    var link = ev.target.closest && ev.target.closest("a[data-drain-name]");
    var dialog = document.getElementById("drain-dialog");
    if (link && dialog && dialog.showModal) {
      ev.preventDefault();
      dialog.querySelector("input[name=backend]").value = link.getAttribute("data-drain-backend");
      dialog.querySelector("input[name=id]").value = link.getAttribute("data-drain-name");
      dialog.querySelector(".drain-target").textContent =
        link.getAttribute("data-drain-name") + " on " + link.getAttribute("data-drain-backend");
      dialog.showModal();
      return;
    }
    var close = ev.target.closest && ev.target.closest("[data-close-dialog]");
    if (close) {
      var d = close.closest("dialog");
      if (d) d.close();
    }
  });
})();
