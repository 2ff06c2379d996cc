// Conveyor's dashboard: a hash-routed page over the server's JSON views, redrawn when the server's
// event stream says something changed. Every value from the cluster reaches the page as text
// (textContent, never innerHTML); links come only from the server's checked *Url fields or from
// routes built here. No dependencies: nothing to fetch, so it works air-gapped.
"use strict";

// The session token: in the fragment of the address `kubectl conveyor dashboard` printed (never sent
// to a server), kept in this origin's own storage (per port: no other local server can read it —
// unlike a cookie, which browsers send to every port of 127.0.0.1), sent as a header on every call.
// A token from the address is kept only once the server takes it: a link from anywhere (another
// site, say) with a wrong one must not replace a working session.
const memory = {}; // where the token lives when the browser's storage is not available
function stored(value) {
  try {
    if (value !== undefined) localStorage.setItem("conveyor-token", value);
    return localStorage.getItem("conveyor-token") || "";
  } catch (e) {
    if (value !== undefined) memory.token = value;
    return memory.token || "";
  }
}

async function takeToken() {
  const m = location.hash.match(/^#token=([A-Za-z0-9_-]+)/);
  const kept = stored();
  if (!m) return kept;
  history.replaceState(null, "", "#/");
  const answer = await fetch("/api/whoami", { credentials: "omit", headers: { "X-Conveyor-Token": m[1] } });
  if (answer.ok) return stored(m[1]);
  banner("The address you opened carries a token this dashboard does not know (an old one?): open the address `kubectl conveyor dashboard` printed last.");
  return kept;
}
let TOKEN = "";
let ready = null; // settles once the page knows its token: every call waits for it
const READ_ONLY = document.querySelector('meta[name="conveyor-read-only"]').content === "true";
const view = document.getElementById("view");
const SVG = "http://www.w3.org/2000/svg";

// ---- small helpers

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(plain(c)));
  }
  return el;
}

// Text from the cluster as shown: direction overrides and isolates (U+202A-202E, U+2066-2069, marks)
// replaced, so a declared author cannot reverse the words around it ("(declared by CI)").
function plain(value) {
  return String(value).replace(/[\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069]/g, "\uFFFD");
}

function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== null && v !== undefined) el.setAttribute(k, String(v));
  }
  for (const c of children.flat()) {
    if (c !== null && c !== undefined) el.append(c instanceof Node ? c : document.createTextNode(plain(c)));
  }
  return el;
}

const enc = encodeURIComponent;
const route = {
  release: (ns, name) => `#/release/${enc(ns)}/${enc(name)}`,
  pipeline: (ns, name) => `#/pipeline/${enc(ns)}/${enc(name)}`,
  commit: (sha) => `#/commit/${enc(sha)}`,
};

function link(href, text, attrs) {
  return href ? h("a", { href, ...(attrs || {}) }, text) : h("span", attrs || {}, text);
}

function external(url, text) {
  // Server-checked http(s) URLs only; opened without a referrer or an opener.
  return url ? h("a", { href: url, target: "_blank", rel: "noopener noreferrer" }, text) : text;
}

function exact(iso) {
  if (!iso) return "";
  const d = new Date(String(iso).replace(" ", "T"));
  // The API server's own timestamps have whole seconds: no ".000" pretending to milliseconds.
  return isNaN(d) ? String(iso) : d.toISOString().replace("T", " ").replace(".000Z", "Z").replace("Z", " UTC");
}

function ago(iso) {
  if (!iso) return "-";
  const secs = (Date.now() - new Date(iso).getTime()) / 1000;
  if (isNaN(secs)) return String(iso);
  if (secs < 0) return "just now";
  if (secs < 60) return `${Math.floor(secs)}s ago`;
  if (secs < 3600) return `${Math.floor(secs / 60)}m ago`;
  if (secs < 86400) return `${Math.floor(secs / 3600)}h ago`;
  return `${Math.floor(secs / 86400)}d ago`;
}

function time(iso) {
  return iso ? h("time", { datetime: iso, title: exact(iso) }, ago(iso)) : "-";
}

function duration(secs) {
  if (secs === null || secs === undefined || secs < 0) return "-";
  if (secs < 60) return `${secs.toFixed(1)}s`;
  if (secs < 3600) return `${(secs / 60).toFixed(1)}m`;
  if (secs < 86400) return `${(secs / 3600).toFixed(1)}h`;
  return `${(secs / 86400).toFixed(1)}d`;
}

function short(sha) {
  return sha ? sha.slice(0, 7) : "-";
}

function phaseBadge(phase) {
  const p = phase || "Pending";
  return h("span", { class: `phase phase-${p}`, "data-phase": p }, p);
}

function table(headers, rows, attrs) {
  return h(
    "table",
    attrs || {},
    h("thead", {}, h("tr", {}, headers.map((x) => h("th", {}, x)))),
    h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: headers.length, class: "empty" }, "none")))
  );
}

// What an action did: kept above the view (live redraws replace the view, not this) until the
// next navigation.
function notice(text, ok) {
  const n = document.getElementById("notice");
  n.textContent = text;
  n.className = `notice ${ok ? "ok" : "bad"}`;
  n.hidden = !text;
}

// The view's content: arrays flattened, absent parts (null) skipped.
function show(...children) {
  view.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
}

function section(title, ...content) {
  return h("section", { class: "card" }, h("h2", {}, title), ...content);
}

async function api(path, options) {
  await ready; // a navigation in the page's first moments must not go out without the token
  const opts = options || {};
  const response = await fetch(path, { ...opts, credentials: "omit", headers: { "X-Conveyor-Token": TOKEN, ...(opts.headers || {}) } });
  if (response.status === 401) banner("This page has no valid session: open the address `kubectl conveyor dashboard` printed (each start of the dashboard has a new one).");
  let body = null;
  try {
    body = await response.json();
  } catch (e) {
    body = { error: `${response.status} ${response.statusText}` };
  }
  if (!response.ok) {
    const err = new Error(body && body.error ? body.error : `${response.status}`);
    err.status = response.status;
    throw err;
  }
  return body;
}

function post(path, body) {
  return api(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
}

// ---- routing and live updates

let current = null; // { name, params, mounted, refresh }
let refreshing = false;
let again = false;

function parseHash() {
  const raw = location.hash.replace(/^#\/?/, "");
  const [path, query] = raw.split("?");
  const parts = path.split("/").filter(Boolean).map((p) => {
    try {
      return decodeURIComponent(p);
    } catch (e) {
      return p; // a malformed %-escape: shown as typed, answered 404 by the server
    }
  });
  const params = new URLSearchParams(query || "");
  return { name: parts[0] || "board", args: parts.slice(1), params };
}

const VIEWS = {};

async function navigate() {
  const { name, args, params } = parseHash();
  const v = VIEWS[name] || VIEWS.notFound;
  document.querySelectorAll("[data-nav]").forEach((a) => a.classList.toggle("active", a.dataset.nav === name));
  view.replaceChildren();
  view.dataset.view = name;
  notice("", true);
  current = { name, args, params, state: {} };
  if (v.mount) v.mount(current);
  await refresh();
}

async function refresh() {
  if (refreshing) {
    again = true;
    return;
  }
  refreshing = true;
  try {
    do {
      again = false;
      const c = current;
      const v = VIEWS[c.name] || VIEWS.notFound;
      try {
        const data = await v.load(c);
        if (c === current) {
          v.render(c, data);
          view.dataset.loaded = String(Date.now());
        }
      } catch (e) {
        if (c === current) showError(c, e);
      }
    } while (again);
  } finally {
    refreshing = false;
  }
  updateWaitingCount();
}

function showError(c, e) {
  let box = view.querySelector(".load-error");
  if (!box) {
    box = h("p", { class: "load-error", role: "alert" });
    view.prepend(box);
  }
  box.textContent = e.status === 404 ? e.message : `could not load: ${e.message}`;
}

// A banner over every view: what makes the page not live, or not usable, right now.
function banner(text) {
  const b = document.getElementById("banner");
  b.textContent = text || "";
  b.hidden = !text;
}

function streamState(event) {
  const live = document.getElementById("live");
  let errors = {};
  try {
    errors = JSON.parse(event.data).errors || {};
  } catch (e) {
    /* an older server: no errors field */
  }
  const broken = Object.entries(errors);
  streamFailures = 0;
  live.classList.toggle("on", broken.length === 0);
  live.classList.toggle("warn", broken.length > 0);
  live.title = broken.length ? "not live: some watches fail" : "live: changes appear as they happen";
  // An RBAC refusal stays until someone changes a Role; an outage heals by itself.
  const denied = broken.filter(([, v]) => v.startsWith("your RBAC"));
  const away = broken.filter(([, v]) => !v.startsWith("your RBAC"));
  const parts = [];
  if (away.length) parts.push(`Not live: ${away.map(([k, v]) => (k === "api-server/*" ? v : `${k}: ${v}`)).join("; ")} — what you see may be stale; it heals by itself.`);
  if (denied.length) parts.push(`Not shown: ${denied.map(([k, v]) => `${k} (${v})`).join("; ")}.`);
  banner(parts.join(" "));
}

let stream = null; // the SharedWorker's port, or this page's own EventSource
let streamFailures = 0;

function onStream(type, data) {
  const live = document.getElementById("live");
  if (type === "hello" || type === "change") {
    streamState({ data });
    refresh(); // hello: whatever changed while the stream was away
  } else if (type === "open") {
    live.classList.add("on");
  } else if (type === "error") {
    live.classList.remove("on", "warn");
    live.title = "not live: reconnecting";
    streamFailures += 1;
    if (streamFailures >= 2) {
      api("/api/whoami").catch((e) => {
        if (e.status === 401) live.title = "not live: this page has no valid session";
        else banner("The dashboard does not answer: is `kubectl conveyor dashboard` still running?");
      });
    }
  }
}

function connect() {
  if (stream) return;
  TOKEN = stored() || TOKEN; // another tab may have taken a newer session
  if (window.SharedWorker) {
    const worker = new SharedWorker("/static/stream.js");
    worker.port.onmessage = (m) => onStream(m.data.type, m.data.data);
    worker.port.start();
    worker.port.postMessage({ token: TOKEN });
    stream = { close: () => worker.port.postMessage({ bye: true }) };
  } else {
    const source = new EventSource(`/api/stream?token=${encodeURIComponent(TOKEN)}`);
    for (const name of ["hello", "change"]) source.addEventListener(name, (e) => onStream(name, e.data));
    source.onerror = () => onStream("error");
    stream = source;
  }
}

function disconnect() {
  if (stream) stream.close();
  stream = null;
}

window.addEventListener("pagehide", disconnect);
window.addEventListener("pageshow", (e) => {
  if (e.persisted) connect(); // back from the browser's page cache: the stream was given up
});

async function whoami() {
  try {
    const me = await api("/api/whoami");
    document.getElementById("viewer").textContent = !me.username ? "" : me.personal ? `you: ${me.username}` : `read as ${me.username}`;
    document.getElementById("viewer").title = (me.groups || []).join(", ");
    document.getElementById("mode").textContent = me.readOnly ? "read-only" : "";
  } catch (e) {
    /* the header is a nicety */
  }
}

let waitingShown = -1;
async function updateWaitingCount() {
  try {
    const w = await api("/api/waiting");
    const n = w.releases.filter((r) => r.you.may).length; // yours to approve, not every gate
    if (n === waitingShown) return;
    waitingShown = n;
    const badge = document.getElementById("waiting-count");
    badge.textContent = String(n);
    badge.hidden = n === 0;
  } catch (e) {
    /* shown on the page itself */
  }
}

// ---- the board

VIEWS.board = {
  mount(c) {
    const p = c.params;
    const search = h("input", {
      id: "board-search",
      type: "search",
      placeholder: "filter: pipeline, namespace, team, commit, release",
      value: p.get("q") || "",
      oninput: () => VIEWS.board.filter(c),
    });
    const ns = h("select", { id: "board-namespace", onchange: () => VIEWS.board.filter(c) }, h("option", { value: "" }, "all namespaces"));
    const team = h("select", { id: "board-team", onchange: () => VIEWS.board.filter(c) }, h("option", { value: "" }, "all teams"));
    c.state = { search, ns, team, body: h("div", { id: "board-body" }), summary: h("p", { class: "summary", id: "board-summary" }) };
    view.append(h("div", { class: "controls" }, search, ns, team), c.state.summary, c.state.body);
  },
  load: () => api("/api/board"),
  options(select, values, wanted) {
    const have = [...select.options].slice(1).map((o) => o.value);
    if (have.join("\n") !== values.join("\n")) {
      const keep = select.value || wanted || "";
      select.replaceChildren(select.options[0], ...values.map((v) => h("option", { value: v }, v)));
      select.value = values.includes(keep) ? keep : "";
    }
  },
  render(c, data) {
    const st = c.state;
    VIEWS.board.options(st.ns, data.namespaces, c.params.get("ns"));
    VIEWS.board.options(st.team, data.teams, c.params.get("team"));
    const rows = data.pipelines.map((p) => VIEWS.board.row(p));
    st.body.replaceChildren(
      data.pipelines.length
        ? h("div", { class: "board", role: "table" }, rows)
        : h("p", { class: "empty" }, `No pipelines visible (${data.scope}).`)
    );
    st.data = data;
    const errors = Object.entries(data.errors || {});
    st.errors = errors.length ? `; cannot watch ${errors.map(([k, v]) => `${k} (${v})`).join(", ")}` : "";
    VIEWS.board.filter(c);
  },
  row(p) {
    const text = [p.namespace, p.name, p.team || "", ...p.stages.flatMap((x) => [x.commit || "", x.release || "", x.inFlight ? x.inFlight.release : "", x.awaitingApproval ? x.awaitingApproval.release : ""])].join(" ").toLowerCase();
    const flags = [];
    if (p.parity.inParity === false) flags.push(h("span", { class: "flag warn", title: `${p.parity.differences} differences` }, "not in parity"));
    if (p.vetoes) flags.push(h("span", { class: "flag", title: "artifacts rolled away from, never promoted again" }, `${p.vetoes} vetoed`));
    for (const pr of p.problems) flags.push(h("span", { class: "flag bad", title: pr.message }, pr.reason));
    if (p.lastFailure) flags.push(link(route.release(p.namespace, p.lastFailure), "last failure", { class: "flag bad" }));
    return h(
      "div",
      { class: "board-row", role: "row", "data-pipeline": `${p.namespace}/${p.name}`, "data-namespace": p.namespace, "data-team": p.team || "", "data-text": text },
      h(
        "div",
        { class: "pipeline-cell", role: "rowheader" },
        link(route.pipeline(p.namespace, p.name), p.name, { class: "pipeline-name" }),
        h("div", { class: "muted" }, p.namespace, p.team && p.team !== p.namespace ? ` · team ${p.team}` : ""),
        h("div", { class: "flags" }, flags)
      ),
      p.stages.map((x) => VIEWS.board.cell(p, x))
    );
  },
  cell(p, x) {
    const f = x.inFlight;
    return h(
      "div",
      { class: `stage-cell${f ? " busy" : ""}${x.awaitingApproval ? " gated" : ""}${x.release ? "" : " empty"}`, role: "cell", "data-stage": x.stage, "data-commit": x.commit || "" },
      h("div", { class: "stage-name" }, x.stage, h("span", { class: "muted" }, ` ${x.namespace}`)),
      x.release
        ? h(
            "div",
            { class: "running" },
            external(x.commitUrl, h("code", { class: "sha" }, short(x.commit))),
            " ",
            link(route.release(p.namespace, x.release), x.release, { class: "release-link" }),
            h(
              "div",
              { class: "muted" },
              "verified ",
              time(x.since),
              x.approvedBy.length ? ` · approved by ${x.approvedBy.join(", ")}` : "",
              x.ciRunUrl || x.ciRunId ? " · " : "",
              x.ciRunUrl || x.ciRunId ? h("span", { class: "nowrap" }, external(x.ciRunUrl, `CI ${x.ciRunId || "run"}`)) : ""
            )
          )
        : h("div", { class: "muted" }, "nothing verified yet"),
      x.pinnedBy ? h("div", { class: "flag", title: "a rollback put the stage on this release" }, `pinned by ${x.pinnedBy}`) : null,
      x.drift ? h("div", { class: "flag warn", title: x.driftMessage || "" }, `runs ${x.running || "an untracked image"}`) : null,
      x.awaitingApproval
        ? h(
            "div",
            { class: "awaiting", "data-waiting": x.awaitingApproval.release, title: x.awaitingApproval.message || "" },
            link(route.release(p.namespace, x.awaitingApproval.release), `${short(x.awaitingApproval.commit)} waits for approval`)
          )
        : null,
      f
        ? h(
            "div",
            { class: "inflight", "data-inflight": f.release, title: f.message || "" },
            link(route.release(p.namespace, f.release), `${short(f.commit)} ${f.step}`),
            h("progress", { max: f.steps, value: f.stepsDone }),
            h("span", { class: "muted" }, ` ${f.stepsDone}/${f.steps}`)
          )
        : null
    );
  },
  filter(c) {
    const st = c.state;
    if (!st.data) return;
    const q = st.search.value.trim().toLowerCase();
    const ns = st.ns.value;
    const team = st.team.value;
    let shown = 0;
    for (const row of st.body.querySelectorAll(".board-row")) {
      const ok = (!q || row.dataset.text.includes(q)) && (!ns || row.dataset.namespace === ns) && (!team || row.dataset.team === team);
      row.hidden = !ok;
      if (ok) shown += 1;
    }
    const d = st.data;
    st.summary.textContent = `${shown} of ${d.pipelines.length} pipelines · ${d.inFlight} promotions in flight · watching ${d.scope}${st.errors || ""}`;
    const params = new URLSearchParams();
    if (q) params.set("q", q);
    if (ns) params.set("ns", ns);
    if (team) params.set("team", team);
    const hash = `#/${params.toString() ? "?" + params : ""}`;
    // Only while the address still names the board: a navigation elsewhere may have changed it
    // already, its hashchange not yet dispatched (the board's data arriving in between would
    // otherwise write "#/" over it, and the page stayed on the board).
    if (parseHash().name !== "board") return;
    if (location.hash !== hash && (location.hash || hash !== "#/")) history.replaceState(null, "", hash);
  },
};

// ---- a commit's journey: the SVG timeline

function timeline(j) {
  const W = 960;
  const labelW = 120;
  const laneH = 30;
  const top = 24;
  const lanes = j.lanes;
  const H = top + lanes.length * laneH + 24;
  const span = Math.max(j.span, 0.001);
  const x = (t) => labelW + (Math.max(0, t) / span) * (W - labelW - 16);
  const svg = s("svg", { class: "timeline", viewBox: `0 0 ${W} ${H}`, width: "100%", role: "img", "aria-label": `timeline of release ${j.release}`, "data-release": j.release });
  for (let i = 0; i <= 4; i += 1) {
    const t = (span * i) / 4;
    svg.append(s("line", { class: "tick", x1: x(t), x2: x(t), y1: top - 6, y2: H - 18 }), s("text", { class: "tick-label", x: x(t), y: H - 4, "text-anchor": i === 4 ? "end" : i === 0 ? "start" : "middle" }, `+${duration(t)}`));
  }
  lanes.forEach((lane, i) => {
    const y = top + i * laneH;
    const g = s("g", { class: `lane lane-${lane.kind}`, "data-lane": lane.lane });
    g.append(s("text", { class: "lane-label", x: 4, y: y + laneH / 2 + 4 }, lane.lane));
    g.append(s("line", { class: "lane-rule", x1: labelW, x2: W - 16, y1: y + laneH / 2, y2: y + laneH / 2 }));
    if (!lane.segments.length) g.append(s("text", { class: "lane-note", x: labelW + 8, y: y + laneH / 2 - 4 }, "not reached"));
    for (const seg of lane.segments) {
      const x1 = x(seg.from);
      const width = Math.max(3, x(seg.to) - x1);
      g.append(
        s(
          "rect",
          { class: `bar bar-${seg.kind}${seg.ongoing ? " ongoing" : ""}${seg.outcome === "Failed" ? " failed" : ""}`, x: x1, y: y + 6, width, height: laneH - 12, rx: 3, "data-kind": seg.kind, "data-start": seg.start, "data-end": seg.end },
          s("title", {}, seg.title)
        )
      );
    }
    svg.append(g);
  });
  for (const m of j.marks) {
    const i = lanes.findIndex((l) => l.lane === m.lane);
    if (i < 0) continue;
    const cx = x(m.offset);
    const cy = top + i * laneH + laneH / 2;
    svg.append(s("path", { class: `mark mark-${m.kind}`, d: `M${cx} ${cy - 7} L${cx + 6} ${cy} L${cx} ${cy + 7} L${cx - 6} ${cy} Z`, "data-kind": m.kind }, s("title", {}, `${m.label} at ${exact(m.at)}`)));
  }
  return h(
    "figure",
    { class: "journey" },
    svg,
    h(
      "figcaption",
      { class: "legend" },
      ["queue", "approval", "migration", "rollout", "smokeTest", "rollback"].map((k) => h("span", { class: `key key-${k}` }, { queue: "waiting for the stage", approval: "waiting for approval", migration: "migration", rollout: "rollout", smokeTest: "smoke test", rollback: "rollback" }[k])),
      h("span", { class: "muted" }, ` from ${exact(j.start)} · hover a bar for exact times`)
    )
  );
}

VIEWS.commit = {
  load: (c) => api(`/api/commits/${enc(c.args[0] || "")}`),
  render(c, data) {
    show(
      h("h1", {}, "Commit ", h("code", {}, data.commit)),
      ...data.releases.map((j) =>
        section(
          h("span", {}, link(route.release(j.namespace, j.release), j.release), " ", h("span", { class: "muted" }, `${j.namespace}/${j.pipeline}`), " ", phaseBadge(j.phase)),
          timeline(j)
        )
      )
    );
  },
};

// ---- a release's page

const JOB_KINDS = { migration: "migration", smokeTest: "smoke test" };

function jobGone(j) {
  if (j.exists) return "";
  return j.unreadable ? ` (${j.unreadable}: what Conveyor recorded is shown)` : " (the Job is gone)";
}

VIEWS.release = {
  async load(c) {
    const [ns, name] = c.args;
    const [rel, waiting] = await Promise.all([api(`/api/releases/${enc(ns)}/${enc(name)}`), api("/api/waiting")]);
    rel.waiting = waiting.releases.find((w) => w.namespace === ns && w.release === name) || null;
    return rel;
  },
  render(c, r) {
    if (view.contains(document.activeElement) && document.activeElement.tagName === "INPUT") return; // typing a comment
    const wrong = r.failedJobs.length
      ? section(
          "What went wrong",
          r.jobs
            .filter((j) => j.result === "Failed")
            .map((j) => h("p", { class: "failed-job", "data-job": j.name }, h("strong", {}, `${JOB_KINDS[j.kind] || j.kind} Job ${j.name}`), ` in ${j.stage} failed`, j.why ? `: ${j.why}` : "", jobGone(j)))
        )
      : r.phase === "Failed" && r.message
        ? section("What went wrong", h("p", { class: "failed-reason" }, r.message))
        : null;
    const ch = r.changes;
    show(
      h("h1", {}, "Release ", h("span", { id: "release-name" }, r.name), " ", phaseBadge(r.phase), r.vetoed ? h("span", { class: "flag bad" }, `vetoed by ${r.vetoedBy || "a rollback"}`) : null),
      h(
        "dl",
        { class: "facts" },
        h("dt", {}, "pipeline"), h("dd", {}, link(route.pipeline(r.namespace, r.pipeline), `${r.namespace}/${r.pipeline}`)),
        h("dt", {}, "commit"), h("dd", {}, external(r.commitUrl, h("code", {}, r.commit)), " ", link(route.commit(r.commit), "journey")),
        h("dt", {}, "image"), h("dd", {}, h("code", {}, r.image || r.digest)),
        h("dt", {}, "CI run"), h("dd", {}, external(r.ciRunUrl, r.ciRunId || (r.ciRunUrl ? "link" : "-"))),
        h("dt", {}, "author"), h("dd", {}, `${r.author || "-"} (declared by CI)`),
        h("dt", {}, "requested by"), h("dd", {}, `${r.requester || "unknown"} (authenticated)`),
        h("dt", {}, "created"), h("dd", {}, exact(r.created)),
        h("dt", {}, "now"), h("dd", { id: "release-message" }, r.message || "-")
      ),
      r.waiting ? section(`Waiting for approval into ${r.waiting.stage}`, waitingBox(r.waiting, () => refresh())) : null,
      wrong,
      section("Journey", timeline(r.journey)),
      section(
        "Stages",
        table(["stage", "phase", "approved by", "entered", "verified", "finished", "message"], r.stages.map((x) => h("tr", { "data-stage": x.stage }, h("td", {}, x.stage), h("td", {}, phaseBadge(x.phase)), h("td", {}, x.approvers.join(", ") || "-"), h("td", {}, exact(x.startedAt)), h("td", {}, exact(x.verifiedAt)), h("td", {}, exact(x.finishedAt)), h("td", {}, x.message || ""))))
      ),
      section(
        "Jobs",
        table(["job", "kind", "stage", "result", "pods", "why"], r.jobs.map((j) => h("tr", { "data-job": j.name, class: j.result === "Failed" ? "bad" : "" }, h("td", {}, h("code", {}, j.name)), h("td", {}, JOB_KINDS[j.kind] || j.kind), h("td", {}, j.stage), h("td", {}, phaseBadge(j.result)), h("td", {}, j.exists ? `${j.succeeded} ok, ${j.failed} failed, ${j.active} running` : j.unreadable ? "not readable now" : "gone"), h("td", {}, j.why || ""))))
      ),
      section(
        "Approvals",
        table(["approval", "stage", "approver", "at", "counted", "why", "said"], r.approvals.map((a) => h("tr", { "data-approval": a.name }, h("td", {}, a.name), h("td", {}, a.stage), h("td", {}, a.approver || "unauthenticated"), h("td", {}, exact(a.at)), h("td", { class: a.counted ? "ok" : "bad" }, a.counted ? "counted" : a.verdict), h("td", {}, a.message), h("td", { class: "comment" }, a.comment || "", a.reviewedBy ? ` (review: ${a.reviewedBy}, declared)` : ""))))
      ),
      section(
        "What changed",
        ch.previous
          ? h("p", {}, "Against ", link(route.release(r.namespace, ch.previous.release), ch.previous.release), ` (${ch.previous.phase}): commits `, external(ch.compareUrl, h("code", {}, ch.commitRange)), ch.sameCommit ? " (the same commit)" : "", ch.imageChanged ? "; a new image" : "; the same image", `; schema change: ${ch.schemaChange}.`)
          : h("p", {}, `The pipeline's first release; schema change: ${ch.schemaChange}.`),
        ch.production ? h("p", {}, "Production runs ", link(route.release(r.namespace, ch.production.release), ch.production.release), " ", external(ch.production.compareUrl, h("code", {}, `${short(ch.production.commit)}..${short(r.commit)}`))) : null
      ),
      r.rollbacks.length
        ? section(
            "Rollbacks",
            table(["rollback", "stage", "from", "to", "phase", "by", "reason"], r.rollbacks.map((b) => h("tr", { "data-rollback": b.name }, h("td", {}, b.name), h("td", {}, b.stage || ""), h("td", {}, b.from || ""), h("td", {}, b.to || ""), h("td", {}, phaseBadge(b.phase)), h("td", {}, b.by || "?"), h("td", {}, b.reason || ""))))
          )
        : null,
      section(
        "Conditions",
        table(["type", "status", "reason", "message", "since"], r.conditions.map((x) => h("tr", {}, h("td", {}, x.type), h("td", {}, x.status), h("td", {}, x.reason), h("td", {}, x.message), h("td", {}, exact(x.lastTransitionTime)))))
      ),
      section(
        "History",
        table(["time", "reason", "stage", "by", "message"], r.history.map((x) => h("tr", { class: x.warning ? "bad" : "" }, h("td", {}, exact(x.time)), h("td", {}, x.reason), h("td", {}, x.stage || ""), h("td", {}, x.actor || ""), h("td", {}, x.message))))
      ),
      section(
        "Recent Events",
        r.eventsUnreadable ? h("p", { class: "bad" }, `Not shown: ${r.eventsUnreadable} — which does not mean there are none.`) : null,
        table(["at", "type", "reason", "message", "count"], r.events.map((e) => h("tr", { class: e.type === "Warning" ? "bad" : "" }, h("td", {}, exact(e.at)), h("td", {}, e.type), h("td", {}, e.reason), h("td", {}, e.message), h("td", {}, e.count))))
      )
    );
  }
};

function waitingBox(w, done) {
  const you = w.you;
  const result = h("p", { class: "action-result", role: "status" });
  const comment = h("input", { type: "text", class: "comment", placeholder: "comment (optional)", maxlength: 1024 });
  const button = h("button", { class: "approve", disabled: !you.may, "data-release": w.release, title: you.message }, "Approve");
  button.addEventListener("click", async () => {
    button.disabled = true;
    result.textContent = "approving…";
    try {
      const made = await post("/api/approve", { namespace: w.namespace, release: w.release, stage: w.stage, uid: w.uid, digest: w.digest, comment: comment.value || null });
      result.textContent = `approval ${made.name} created, stamped ${made.approver}`;
      result.className = "action-result ok";
      notice(`Approval ${made.name} created for ${w.release} into ${w.stage}, stamped ${made.approver} by the API server.`, true);
      done();
    } catch (e) {
      result.textContent = e.message;
      result.className = "action-result bad";
      button.disabled = false;
    }
  });
  return h(
    "div",
    { class: "approve-box", "data-release": w.release },
    h("p", {}, `${w.counted.length} of ${w.needed} approvals counted`, w.counted.length ? ` (${w.counted.join(", ")})` : "", `; approvers: ${[...w.approvers.users, ...w.approvers.groups.map((g) => `group ${g}`)].join(", ") || "anyone"}`, w.fourEyes ? "; four eyes" : ""),
    READ_ONLY ? null : h("div", { class: "approve-form" }, comment, button),
    h("p", { class: `why ${you.may ? "ok" : "bad"}`, "data-reason": you.reason }, you.message),
    result
  );
}

// ---- waiting for me

VIEWS.waiting = {
  load: () => api("/api/waiting"),
  render(c, data) {
    if (c.state.list && c.state.list.contains(document.activeElement) && document.activeElement.tagName === "INPUT") return; // typing
    const items = data.releases.map((w) =>
      h(
        "article",
        { class: "card waiting", "data-release": w.release, "data-namespace": w.namespace },
        h("h2", {}, link(route.release(w.namespace, w.release), w.release), " → ", w.stage, " ", h("span", { class: "muted" }, `${w.namespace}/${w.pipeline}`)),
        h("p", {}, "commit ", external(w.commitUrl, h("code", {}, short(w.commit))), ` · requested by ${w.requester || "unknown"} · at the gate since `, time(w.waitingSince)),
        waitingBox(w, () => refresh())
      )
    );
    c.state.list = h("div", { id: "waiting-list" }, items.length ? items : h("p", { class: "empty" }, "Nothing waits for an approval."));
    show(h("h1", {}, "Waiting for approval"), h("p", { class: "muted" }, READ_ONLY ? "A read-only view: approve with kubectl conveyor approve, as yourself." : data.viewer ? `You are ${data.viewer.username}${data.viewer.groups.length ? ` (groups: ${data.viewer.groups.join(", ")})` : ""}.` : "The API server did not say who you are."), c.state.list);
  },
};

// ---- a pipeline's history and delivery

function perDayChart(days) {
  const W = 960;
  const H = 120;
  const max = Math.max(1, ...days.map((d) => d.promotions + d.rollbacks));
  const bw = (W - 40) / days.length;
  const svg = s("svg", { class: "perday", viewBox: `0 0 ${W} ${H + 20}`, width: "100%", role: "img", "aria-label": "promotions and rollbacks per day" });
  days.forEach((d, i) => {
    const x = 30 + i * bw;
    const hp = (d.promotions / max) * H;
    const hr = (d.rollbacks / max) * H;
    svg.append(s("rect", { class: "bar-promotions", x, y: H - hp, width: bw * 0.8, height: hp }, s("title", {}, `${d.day}: ${d.promotions} promotions, ${d.failures} failed`)));
    svg.append(s("rect", { class: "bar-rollbacks", x, y: H - hp - hr, width: bw * 0.8, height: hr }, s("title", {}, `${d.day}: ${d.rollbacks} rollbacks`)));
  });
  svg.append(s("text", { class: "tick-label", x: 30, y: H + 16 }, days.length ? days[0].day : ""), s("text", { class: "tick-label", x: W - 10, y: H + 16, "text-anchor": "end" }, days.length ? days[days.length - 1].day : ""));
  return svg;
}

VIEWS.pipeline = {
  load: (c) => api(`/api/pipelines/${enc(c.args[0])}/${enc(c.args[1])}${c.params.get("days") ? `?days=${enc(c.params.get("days"))}` : ""}`),
  render(c, p) {
    if (view.contains(document.activeElement) && document.activeElement.tagName === "INPUT") return; // typing a reason
    const d = p.dora;
    const tile = (name, value, note) => h("div", { class: "tile", "data-metric": name }, h("div", { class: "tile-value" }, value), h("div", { class: "tile-name" }, name), h("div", { class: "muted" }, note));
    show(
      h("h1", {}, "Pipeline ", p.name, " ", h("span", { class: "muted" }, p.namespace)),
      Object.keys(p.unreadable || {}).length ? h("p", { class: "bad", id: "pipeline-unreadable" }, `Cannot read ${Object.entries(p.unreadable).map(([k, v]) => `${k} (${v})`).join(", ")}: the history and metrics below leave those out.`) : null,
      section(
        `Delivery, last ${d.days} days (into ${d.stage || "-"})`,
        h(
          "div",
          { class: "tiles" },
          tile("deployment frequency", `${d.deployments}`, `deployments (${(d.deploymentsPerDay || 0).toFixed(2)}/day)`),
          tile("lead time for changes", duration(d.leadTimeSeconds), `median commit → verified, ${d.leadTimes || 0} releases`),
          tile("change failure rate", d.changeFailureRate === null || d.changeFailureRate === undefined ? "-" : `${Math.round(d.changeFailureRate * 100)}%`, `${d.failedChanges || 0} failed, rolled back or vetoed`),
          tile("time to restore", duration(d.timeToRestoreSeconds), "median failure → good release running")
        ),
        perDayChart(p.perDay),
        h("p", { class: "legend" }, h("span", { class: "key key-promotions" }, "promotions"), h("span", { class: "key key-rollback" }, "rollbacks"))
      ),
      READ_ONLY ? null : section("Roll back", ...p.stages.map((st) => rollbackForm(p, st.stage))),
      section(
        "History",
        table(["at", "stage", "release", "commit", "action", "outcome", "by"], p.history.map((x) => h("tr", {}, h("td", {}, exact(x.at)), h("td", {}, x.stage), h("td", {}, link(route.release(p.namespace, x.release), x.release)), h("td", {}, link(route.commit(x.commit), x.commit)), h("td", {}, x.action, x.reason ? `: ${x.reason}` : ""), h("td", {}, x.outcome), h("td", {}, x.by))))
      ),
      section("Vetoed artifacts", table(["release", "commit", "rollback", "at"], p.vetoed.map((v) => h("tr", {}, h("td", {}, v.release), h("td", {}, v.commit), h("td", {}, v.rollback), h("td", {}, exact(v.at)))))),
      p.parity.length ? section("Parity differences", table(["what", "reference", "other"], p.parity.map((x) => h("tr", {}, h("td", {}, x.path), h("td", {}, x.a), h("td", {}, x.b))))) : null
    );
  },
};

function rollbackForm(p, stage) {
  const reason = h("input", { type: "text", placeholder: `why roll ${stage} back (recorded)`, maxlength: 1024 });
  const result = h("span", { class: "action-result", role: "status" });
  const button = h("button", { class: "rollback", "data-stage": stage }, `Roll back ${stage}`);
  button.addEventListener("click", async () => {
    if (!window.confirm(`Roll ${p.name} back in ${stage} to the release verified there before?`)) return;
    button.disabled = true;
    try {
      const made = await post("/api/rollback", { namespace: p.namespace, pipeline: p.name, stage, reason: reason.value || null });
      result.textContent = `rollback ${made.name} created, requested by ${made.requester}`;
      result.className = "action-result ok";
      notice(`Rollback ${made.name} of ${p.name} in ${stage} created, requested by ${made.requester}.`, true);
    } catch (e) {
      result.textContent = e.message;
      result.className = "action-result bad";
    } finally {
      button.disabled = false;
    }
  });
  return h("div", { class: "rollback-form" }, reason, button, result);
}

VIEWS.notFound = {
  load: async () => null,
  render() {
    show(h("h1", {}, "Not found"), h("p", {}, link("#/", "Back to the board")));
  },
};

// Relative times age on their own; redraw them, not the page.
setInterval(() => {
  for (const t of document.querySelectorAll("time[datetime]")) t.textContent = ago(t.getAttribute("datetime"));
}, 10000);

window.addEventListener("hashchange", () => {
  if (location.hash.startsWith("#token=")) {
    // The printed address opened in a tab that already shows the dashboard: perhaps a new session.
    takeToken()
      .then((token) => {
        if (token !== TOKEN) {
          TOKEN = token;
          banner("");
          disconnect();
          connect();
          whoami();
        }
      })
      .finally(() => navigate());
    return;
  }
  const { name, params } = parseHash();
  if (current && current.name === "board" && name === "board") {
    // A filter in the address (a shared link, back, forward) applies to the open board.
    const st = current.state;
    current.params = params;
    if (st.search.value !== (params.get("q") || "")) st.search.value = params.get("q") || "";
    for (const [select, key] of [[st.ns, "ns"], [st.team, "team"]]) {
      const want = params.get(key) || "";
      if ([...select.options].some((o) => o.value === want)) select.value = want;
    }
    VIEWS.board.filter(current);
    return;
  }
  navigate();
});
ready = (async () => {
  try {
    TOKEN = await takeToken();
  } catch (e) {
    TOKEN = stored(); // the check could not be made: carry on with what we have
  }
})();
ready.then(() => {
  whoami();
  connect();
  navigate();
});
