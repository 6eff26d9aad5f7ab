// syncd board: the live handoff feed and auto-submitting filters. No framework, no build.
// Every value from the server is put in with textContent, never as HTML.
"use strict";

(function () {
  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  function shortTime(iso) {
    // "2026-11-30T06:10:27.123456Z" -> "2026-11-30 06:10:27Z", as the server renders it.
    if (!iso) return "-";
    return iso.slice(0, 10) + " " + iso.slice(11, 19) + "Z";
  }

  function feedItem(h) {
    const li = el("li", "new");
    li.dataset.id = String(h.event_id);
    li.appendChild(el("time", null, shortTime(h.happened_at)));
    const link = el("a", null, h.request);
    link.href = "/r/" + encodeURIComponent(h.request);
    li.appendChild(link);
    li.appendChild(document.createTextNode(" "));
    li.appendChild(el("span", "from", h.from_name || "unowned"));
    li.appendChild(document.createTextNode(" → "));
    li.appendChild(el("span", "to", h.to_name || "unowned"));
    li.appendChild(document.createTextNode(" "));
    li.appendChild(el("span", "where", "in " + h.where));
    if (h.actor) {
      li.appendChild(document.createTextNode(" "));
      li.appendChild(el("span", "actor", "by " + h.actor));
    }
    if (h.why) {
      li.appendChild(document.createTextNode(" "));
      li.appendChild(el("q", "why", h.why));
    }
    return li;
  }

  // After a handoff, the lanes, the attention list and the stale list are fetched again
  // from the same URL (same filters) and swapped in: the page itself is never reloaded.
  async function refreshBoard() {
    const r = await fetch(window.location.href, { cache: "no-store" });
    if (!r.ok) return;
    const fresh = new DOMParser().parseFromString(await r.text(), "text/html");
    ["awaiting", "lanes", "stale"].forEach(function (id) {
      const now = document.getElementById(id);
      const next = fresh.getElementById(id);
      if (now && next) now.replaceWith(document.importNode(next, true));
      else if (now && !next) now.remove();
      else if (!now && next) {
        const lanes = document.getElementById("lanes");
        if (lanes) lanes.before(document.importNode(next, true));
      }
    });
  }

  function startFeed(feed) {
    const live = document.getElementById("live");
    const every = parseInt(feed.dataset.poll, 10) || 3000;
    const keep = 60;
    async function tick() {
      const after = feed.dataset.after || "0";
      try {
        const r = await fetch("/api/feed?after=" + encodeURIComponent(after), {
          headers: { accept: "application/json" },
          cache: "no-store",
        });
        if (!r.ok) throw new Error("HTTP " + r.status);
        const rows = await r.json();
        // Newest first from the server; insert oldest first so the newest ends on top.
        for (let i = rows.length - 1; i >= 0; i--) {
          feed.insertBefore(feedItem(rows[i]), feed.firstChild);
        }
        if (rows.length) {
          feed.dataset.after = String(rows[0].event_id);
          await refreshBoard();
        }
        while (feed.children.length > keep) feed.removeChild(feed.lastChild);
        if (live) live.dataset.state = "ok";
      } catch (e) {
        if (live) live.dataset.state = "error";
      }
      setTimeout(tick, every);
    }
    setTimeout(tick, every);
  }

  document.addEventListener("DOMContentLoaded", function () {
    const feed = document.getElementById("feed");
    if (feed) startFeed(feed);
    document.querySelectorAll("[data-autosubmit]").forEach(function (input) {
      input.addEventListener("change", function () { input.form.submit(); });
    });
  });
})();
