// fedchain explorer: live updates. Listens to the server's chaincode events (/events, server-sent events)
// and, when the ledger changes, fetches the current page again and swaps in its <main>: the page updates
// without a reload. The tables work without this script; it only saves the reader a refresh.
(function () {
  "use strict";
  var status = document.getElementById("live-status");
  var pending = null;
  var busy = false;

  function say(text, state) {
    if (!status) return;
    status.textContent = text;
    status.setAttribute("data-state", state);
  }

  function refresh() {
    pending = null;
    if (busy) { pending = setTimeout(refresh, 300); return; }
    busy = true;
    fetch(window.location.href, { headers: { "Accept": "text/html" }, cache: "no-store" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (html === null) return;
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.querySelector("main");
        var current = document.querySelector("main");
        if (fresh && current) {
          current.replaceWith(document.importNode(fresh, true));
          document.documentElement.setAttribute("data-refreshed", String(Date.now()));
        }
      })
      .catch(function () { /* the next event tries again */ })
      .finally(function () { busy = false; });
  }

  if (!window.EventSource) { say("Live updates: not supported by this browser; reload for new data", "off"); return; }
  var source = new EventSource("/events");
  source.onopen = function () { say("Live updates: on", "on"); };
  source.onerror = function () { say("Live updates: reconnecting…", "off"); };
  source.addEventListener("ledger", function (e) {
    var ev = {};
    try { ev = JSON.parse(e.data); } catch (err) { return; }
    say("Live updates: on (last: " + ev.name + (ev.round_id !== null ? " round " + ev.round_id : "") +
        ", block " + ev.block + ")", "on");
    if (pending === null) pending = setTimeout(refresh, 250);  // events come in bursts: one fetch per burst
  });
})();
