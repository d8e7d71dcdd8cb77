// The status page's script: it draws a snapshot (the one embedded in the
// page, then each one from api/events, or from api/snapshot when the
// event stream fails) into the page. Text goes in with textContent only.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const initial = JSON.parse($("initial").textContent);
  let intervalMS = initial["interval-ms"] || 1000;
  let historyS = initial["history-s"] || 600;
  let lastUpdate = 0;

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  // fill replaces a tbody's rows; each row is a list of cells (a string,
  // a number or a Node), optionally with row attributes.
  function fill(tbody, rows, empty, cols) {
    const frag = document.createDocumentFragment();
    for (const r of rows) {
      const tr = el("tr", r.cls);
      for (const [k, v] of Object.entries(r.data || {})) tr.dataset[k] = v;
      for (const c of r.cells) {
        const td = el("td");
        if (c instanceof Node) td.appendChild(c);
        else if (typeof c === "number") { td.className = "num"; td.textContent = String(c); }
        else td.textContent = c === undefined || c === null ? "" : String(c);
        tr.appendChild(td);
      }
      frag.appendChild(tr);
    }
    if (rows.length === 0 && empty) {
      const tr = el("tr"), td = el("td", "muted", empty);
      td.colSpan = cols || 1;
      tr.appendChild(td);
      frag.appendChild(tr);
    }
    tbody.replaceChildren(frag);
  }

  function kv(dl, pairs) {
    const frag = document.createDocumentFragment();
    for (const [k, v] of pairs) {
      frag.appendChild(el("dt", "", k));
      frag.appendChild(v instanceof Node ? (() => { const d = el("dd"); d.appendChild(v); return d; })() : el("dd", "", v));
    }
    dl.replaceChildren(frag);
  }

  function errors(id, list) {
    const ul = $(id), frag = document.createDocumentFragment();
    for (const e of list || []) frag.appendChild(el("li", "", e));
    ul.replaceChildren(frag);
  }

  function duration(s) {
    if (typeof s !== "number" || s < 0) return "";
    const d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60), sec = Math.floor(s % 60);
    if (d) return d + "d " + h + "h";
    if (h) return h + "h " + m + "m";
    if (m) return m + "m " + sec + "s";
    return sec + "s";
  }

  const pad = (n) => String(n).padStart(2, "0");
  function when(iso) {
    const d = new Date(iso);
    if (isNaN(d)) return iso || "";
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " + pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds());
  }

  const fixed = (v, n) => (typeof v === "number" ? v.toFixed(n) : "–");
  const yes = (b) => (b ? "yes" : "");

  function section(name, data) {
    const s = $(name);
    s.hidden = !data;
    if (data) {
      $(name + "-service").textContent = "(" + data.service + ")";
      errors(name + "-errors", data.errors);
    }
    return !!data;
  }

  function services(list) {
    fill($("services-body"), (list || []).map((s) => ({
      cls: s.up ? "" : "down",
      data: { service: s.service, up: String(!!s.up) },
      cells: [s.service, el("span", s.up ? "up" : "down", s.up ? "up" : "down"), s.up ? duration(s.uptime) : "", s.version || "", s.pid || "", s.error || ""],
    })), "no services configured", 6);
  }

  function ptp(p) {
    if (!section("ptp", p)) return;
    const sel = (p.instances || []).find((i) => i.selected);
    kv($("ptp-summary"), sel ? [
      ["selected", sel.name], ["state", sel.state], ["master", sel.master || "–"],
      ["offset", fixed(sel["offset-ns"], 1) + " ns"], ["freq adj", fixed(sel["freq-adj-ppb"], 3) + " ppb"],
      ["path delay", fixed(sel["path-delay-ns"], 1) + " ns"],
    ] : [["selected", "none"]]);
    fill($("ptp-instances"), (p.instances || []).map((i) => ({
      data: { instance: i.name, state: i.state || "" },
      cells: [i.name, i.module || "", i.state, yes(i.selected), fixed(i["offset-ns"], 1), fixed(i["freq-adj-ppb"], 3), fixed(i["path-delay-ns"], 1), i.master || "", (i.alarms || []).join(", ")],
    })), "no instances", 9);
  }

  function mctp(m) {
    if (!section("mctp", m)) return;
    const e = m.endpoint;
    kv($("mctp-endpoint"), e ? [["EID", e.eid], ["UUID", e.uuid || "–"], ["bridge", e.bridge ? "yes" : "no"], ["message types", (e.types || []).join(", ") || "none"]] : []);
    fill($("mctp-bindings"), (e && e.bindings || []).map((b) => ({ cells: [b.name, b.mtu, yes(b.default), b["forward-to"] || ""] })), "none", 4);
    fill($("mctp-routes"), (m.routes || []).map((r) => ({ cells: [r.first === r.last ? String(r.first) : r.first + "–" + r.last, r.binding, yes(r.default)] })), "none", 3);
    const st = m.stats || {};
    fill($("mctp-messages"), (st.messages || []).map((c) => ({ cells: [c.name, c.value] })), "none", 2);
    fill($("mctp-drops"), (st.drops || []).map((c) => ({ cls: c.value ? "down" : "", cells: [c.name, c.value] })), "none", 2);
  }

  function mdio(m) {
    if (!section("mdio", m)) return;
    fill($("mdio-ports"), (m.ports || []).map((p) => {
      const link = p.link === null || p.link === undefined ? "" : String(p.link);
      return {
        data: { port: p.name, link: link },
        cells: [p.name, el("span", link === "true" ? "up" : link === "false" ? "down" : "muted", link === "true" ? "up" : link === "false" ? "down" : "?"),
          link === "true" && p.speed ? p.speed + " Mbit/s" : "", link === "true" ? (p.duplex || "") + (p.role ? " (" + p.role + ")" : "") : "",
          typeof p.changes === "number" ? p.changes : "",
          (p.backend || "") + (p.interface ? " (" + p.interface + ")" : ""), p["phy-id"] || "", p.error || ""],
      };
    }), "no ports", 8);
    events("mdio-events", m.events);
  }

  function events(id, list) {
    fill($(id), (list || []).slice().reverse().map((e) => ({ cells: [when(e.time), e.what, e.text] })), "none yet", 3);
  }

  function appliance(a) {
    if (!section("appliance", a)) return;
    events("appliance-events", a.events);
  }

  // The plots: one uPlot each, fed from the history columns.
  const hist = { t: [], off: [], freq: [] };
  function plot(id, label, unit, digits) {
    const div = $(id);
    const opts = {
      width: Math.max(div.clientWidth, 200), height: 190,
      scales: { x: { time: true } },
      series: [{}, { label: label, stroke: "#1e6fd9", width: 1.5, points: { size: 4 }, value: (u, v) => (v === null || v === undefined ? "–" : v.toFixed(digits) + " " + unit) }],
      axes: [{ stroke: "#889", grid: { stroke: "rgba(128,128,128,.2)" }, ticks: { stroke: "rgba(128,128,128,.3)" } },
        { size: 64, stroke: "#889", grid: { stroke: "rgba(128,128,128,.2)" }, ticks: { stroke: "rgba(128,128,128,.3)" } }],
    };
    return { div: div, u: new uPlot(opts, [[], []], div) };
  }
  const plots = [plot("offset-plot", "offset", "ns", 1), plot("freq-plot", "freq adj", "ppb", 3)];

  function history(h) {
    if (!h) return;
    if (h.full) { hist.t = []; hist.off = []; hist.freq = []; }
    const lastT = hist.t.length ? hist.t[hist.t.length - 1] : -Infinity;
    for (let i = 0; i < (h.t || []).length; i++) {
      if (h.t[i] <= lastT) continue;
      hist.t.push(h.t[i]);
      hist.off.push(h["offset-ns"][i]);
      hist.freq.push(h["freq-adj-ppb"][i]);
    }
    if (hist.t.length) {
      const oldest = hist.t[hist.t.length - 1] - historyS;
      let n = 0;
      while (n < hist.t.length && hist.t[n] < oldest) n++;
      if (n) { hist.t.splice(0, n); hist.off.splice(0, n); hist.freq.splice(0, n); }
    }
    const cols = [hist.off, hist.freq];
    plots.forEach((p, i) => {
      p.u.setData([hist.t, cols[i]]);
      p.div.dataset.points = String(cols[i].filter((v) => v !== null && v !== undefined).length);
    });
  }

  function sinceT() { return hist.t.length ? hist.t[hist.t.length - 1] : 0; }

  function apply(s) {
    intervalMS = s["interval-ms"] || intervalMS;
    historyS = s["history-s"] || historyS;
    services(s.services);
    ptp(s.ptp);
    mctp(s.mctp);
    mdio(s.mdio);
    appliance(s.appliance);
    history(s.history);
    if (s.round) {
      lastUpdate = Date.now();
      $("updated").textContent = "updated " + when(s.time);
    } else {
      $("updated").textContent = "waiting for the first round";
    }
  }

  const conn = $("conn");
  let mode = "connecting";
  function setConn(m) { mode = m; conn.textContent = m; conn.className = "conn " + m; }

  function poll() {
    fetch("api/snapshot?since=" + sinceT(), { cache: "no-store" })
      .then((r) => { if (!r.ok) throw new Error(r.status + " " + r.statusText); return r.json(); })
      .then((s) => { apply(s); setConn("polling"); })
      .catch(() => setConn("offline"))
      .finally(() => setTimeout(poll, intervalMS));
  }

  function stream() {
    if (!window.EventSource) { poll(); return; }
    const es = new EventSource("api/events");
    let got = false;
    es.onmessage = (ev) => {
      got = true;
      const s = JSON.parse(ev.data);
      apply(s);
      setConn("live");
    };
    es.onerror = () => {
      // A stream that never delivered, or that the server refused,
      // is given up for polling; one that worked reconnects by itself.
      if (!got || es.readyState === EventSource.CLOSED) { es.close(); poll(); } else setConn("reconnecting");
    };
  }

  // Mark the page stale when updates stop coming.
  setInterval(() => {
    if (lastUpdate && Date.now() - lastUpdate > 3 * intervalMS + 2000 && mode !== "offline") {
      setConn("stale");
      conn.textContent = "stale " + Math.round((Date.now() - lastUpdate) / 1000) + " s";
    }
  }, 1000);

  window.addEventListener("resize", () => {
    for (const p of plots) p.u.setSize({ width: Math.max(p.div.clientWidth, 200), height: 190 });
  });

  apply(initial);
  stream();
})();
