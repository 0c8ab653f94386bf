// Refreshes the Home page's figures from /api/status every 5 s. The page shows the same
// figures without this script; the refreshes say "X-Refresh" so they do not keep the
// session alive: a page left open still times out.
"use strict";
(function () {
  function flatten(value, key, out) {
    if (value !== null && typeof value === "object") {
      for (const k of Object.keys(value)) flatten(value[k], key ? key + "." + k : k, out);
    } else {
      out[key] = value === null ? "" : String(value);
    }
    return out;
  }
  async function refresh() {
    let r;
    try {
      r = await fetch("/api/status", { headers: { "X-Refresh": "1" }, cache: "no-store" });
    } catch (e) {
      return; // the card is out of reach for now: try again next time
    }
    if (r.redirected || !r.ok) {
      location.href = r.redirected ? r.url : "/login"; // the session has ended: say why
      return;
    }
    const f = flatten(await r.json(), "", {});
    for (const el of document.querySelectorAll("[data-k]")) {
      if (el.dataset.k in f) el.textContent = f[el.dataset.k];
    }
    for (const el of document.querySelectorAll("[data-s]")) {
      if (el.dataset.s in f) el.dataset.v = f[el.dataset.s];
    }
  }
  // The history's charts are drawn by the card: once a minute, take the page's new ones.
  async function charts() {
    const here = document.querySelector(".charts");
    if (!here) return;
    let r;
    try {
      r = await fetch(location.pathname + location.search, { headers: { "X-Refresh": "1" }, cache: "no-store" });
    } catch (e) {
      return;
    }
    if (r.redirected || !r.ok) return; // the figures' refresh says why
    const page = new DOMParser().parseFromString(await r.text(), "text/html");
    const fresh = page.querySelector(".charts");
    if (fresh) here.replaceWith(document.importNode(fresh, true));
  }
  setInterval(refresh, 5000);
  setInterval(charts, 60000);
})();
