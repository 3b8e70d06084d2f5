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
    function on(name, handler) {
      source.addEventListener(name, function (e) { received = true; handler(JSON.parse(e.data)); });
    }
    // The stream could not be opened (or broke before any event): poll the page instead.
    source.onerror = function () {
      if (!received) { source.close(); fallback(); }
    };
    on("text", function (data) { if (text) { text.textContent += data.text; } });
    on("reset", function () { if (text) { text.textContent = ""; } });
    on("tool", function (data) {
      if (!tools) { return; }
      var li = tools.querySelector("[data-tool='" + data.id + "']");
      if (!li) {
        li = document.createElement("li");
        li.setAttribute("data-tool", data.id);
        tools.appendChild(li);
      }
      li.textContent = (data.depth > 0 ? "↳ " : "") + data.name
        + (data.done ? (data.isError ? ": failed" : ": done") : data.awaiting ? ": awaiting approval" : ": running…");
    });
    on("state", function (data) { el.setAttribute("data-state", data.state); });
    // Claude is unavailable and the run waits: one line under the text, replaced by the next wait, gone with the next text.
    var waiting = null;
    on("waiting", function (data) {
      if (!waiting) {
        waiting = document.createElement("p");
        waiting.className = "live-waiting";
        waiting.setAttribute("data-live-waiting", "");
        el.appendChild(waiting);
      }
      waiting.textContent = "Claude is unavailable (" + data.error + "): trying again in " + data.waitSeconds
        + " s (failing for " + data.failingForSeconds + " s)";
    });
    on("iteration", function () { if (waiting) { waiting.remove(); waiting = null; } });
    on("text", function () { if (waiting) { waiting.remove(); waiting = null; } });
    on("finished", function () {
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
