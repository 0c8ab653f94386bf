// Refreshes the MODBUS debug page's frames and counters from /debug.json every 2 s, and
// lets them be paused. The page is whole without this script (its Refresh link reloads
// it); the refreshes say "X-Refresh" so they do not keep the session alive.
"use strict";
(function () {
  const pause = document.getElementById("pause");
  let paused = false;
  pause.hidden = false;
  pause.addEventListener("click", function () {
    paused = !paused;
    pause.textContent = paused ? "Resume" : "Pause";
  });
  function cell(text, cls, tag) {
    const td = document.createElement("td");
    const inner = tag ? document.createElement(tag) : td;
    inner.textContent = text;
    if (tag) td.appendChild(inner);
    if (cls) inner.className = cls;
    return td;
  }
  async function refresh() {
    if (paused) return;
    let r;
    try {
      r = await fetch("/debug.json" + location.search, { headers: { "X-Refresh": "1" }, cache: "no-store" });
    } catch (e) {
      return; // out of reach for now: try again next time
    }
    if (r.redirected || !r.ok) {
      location.href = r.redirected ? r.url : "/debug"; // the session ended, or debug is off
      return;
    }
    const d = await r.json();
    const rows = d.frames.slice(0, 100).map(function (f) {
      const tr = document.createElement("tr");
      const fate = cell(f.fate_text, "tag", "span");
      fate.firstChild.dataset.v = f.tone;
      tr.append(cell(f.time, "num"), cell(f.source_text), cell(f.direction_text),
        cell(f.bytes, "hex", "code"), cell(f.decoded), fate);
      return tr;
    });
    document.getElementById("frames").replaceChildren(...rows);
    const none = document.getElementById("none");
    if (none) none.hidden = rows.length > 0;
    for (const el of document.querySelectorAll("[data-k^='counters.']")) {
      el.textContent = d.counters[el.dataset.k.slice(9)];
    }
    document.getElementById("updated").textContent = d.time;
  }
  setInterval(refresh, 2000);
})();
