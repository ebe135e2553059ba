// kstudio console: keep the page current. Every two seconds, ask the console for the namespace's revision
// (a number that changes with any object of the namespace); when it changed, fetch this page again and
// swap in its live regions ([data-live] elements, by id). Forms live outside them, so nothing typed is lost.
// No framework, no external code: this file is all the script the console has.
(function () {
  "use strict";
  var body = document.body;
  var revisionUrl = body.getAttribute("data-revision-url");
  if (!revisionUrl) {
    return;
  }
  var seen = body.getAttribute("data-revision");
  var PERIOD_MS = 2000;

  function swap(html) {
    var fresh = new DOMParser().parseFromString(html, "text/html");
    var regions = document.querySelectorAll("[data-live]");
    for (var i = 0; i < regions.length; i++) {
      var replacement = fresh.getElementById(regions[i].id);
      if (replacement) {
        regions[i].replaceWith(document.importNode(replacement, true));
      }
    }
  }

  function refresh(revision) {
    return fetch(location.pathname + location.search, { cache: "no-store" }).then(function (response) {
      if (response.ok) {
        return response.text().then(function (html) {
          swap(html);
          seen = revision;
          body.setAttribute("data-revision", revision);
        });
      }
      // The object is gone (404) or the console is unwell: show what the console says now.
      seen = revision;
      location.reload();
    });
  }

  function tick() {
    fetch(revisionUrl, { cache: "no-store" })
      .then(function (response) {
        return response.ok ? response.json() : null;
      })
      .then(function (answer) {
        if (answer && String(answer.revision) !== seen) {
          return refresh(String(answer.revision));
        }
      })
      .catch(function () {
        // The console is restarting or the network is down for a moment: try again on the next tick.
      })
      .then(function () {
        setTimeout(tick, PERIOD_MS);
      });
  }

  setTimeout(tick, PERIOD_MS);
})();
