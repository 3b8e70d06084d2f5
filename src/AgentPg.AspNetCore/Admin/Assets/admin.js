// AgentPg admin UI: live updates without a build step. Everything rendered from events is inserted as text, never HTML.
(function () {
  "use strict";

  // Elements with data-refresh="ms" are re-fetched as a fragment of the current page and replaced in place.
  function refresh(el, attribute) {
    var interval = parseInt(el.getAttribute(attribute), 10) || 5000;
    var timer = setInterval(function () {
      fetch(location.href, { headers: { "X-AgentPg-Fragment": "1" }, credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.text() : null; })
        .then(function (html) {
          if (html === null) { return; }
          var template = document.createElement("template");
          template.innerHTML = html;
          var fresh = template.content.querySelector("[" + attribute + "]");
          if (fresh) {
            el.replaceWith(fresh);
            clearInterval(timer);
            refresh(fresh, attribute);
          } else if (attribute === "data-refresh-until-done") {
            clearInterval(timer);
            location.reload();
          }
        })
        .catch(function () { /* the next tick retries */ });
    }, interval);
  }

  // A run in progress: follow its server-sent events (text deltas, tool calls) and reload when it finishes.
  function follow(el, fallback) {
    var url = el.getAttribute("data-events");
    if (!url || !window.EventSource) { return false; }
    var text = el.querySelector("[data-live-text]");
    var tools = el.querySelector("[data-live-tools]");
    var source = new EventSource(url);
    var received = false;
    source.addEventListener("message", function () { received = true; });
    // The stream could not be opened (or broke before any event): poll the page instead of retrying forever.
    source.onerror = function () {
      if (!received) { source.close(); fallback(); }
    };
    source.addEventListener("text", function (e) {
      received = true;
      if (text) { text.textContent += JSON.parse(e.data).text; }
    });
    source.addEventListener("tool", function (e) {
      if (!tools) { return; }
      var data = JSON.parse(e.data);
      var li = document.createElement("li");
      li.textContent = data.name + (data.done ? (data.isError ? " failed" : " done") : " running…");
      tools.appendChild(li);
    });
    source.addEventListener("approval", function () { location.reload(); });
    source.addEventListener("finished", function () {
      source.close();
      if (el.hasAttribute("data-done-reload")) { location.reload(); }
    });
    return true;
  }

  document.addEventListener("DOMContentLoaded", function () {
    var polling = false;
    function poll() {
      if (polling) { return; }
      polling = true;
      document.querySelectorAll("[data-refresh-until-done]").forEach(function (el) { refresh(el, "data-refresh-until-done"); });
    }
    var following = false;
    document.querySelectorAll(".live[data-events]").forEach(function (el) { following = follow(el, poll) || following; });
    document.querySelectorAll("[data-refresh]").forEach(function (el) { refresh(el, "data-refresh"); });
    if (!following) { poll(); }
  });
})();
