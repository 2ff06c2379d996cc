// One event stream per session token for every page of this dashboard in this browser: a browser
// allows six connections per host, and a stream per window would leave none for the pages' own
// requests. Pages connect with their token; the worker keeps one EventSource per token in use,
// passes every event on, replays the last one to a page that joins (so a new window learns at once
// whether the watches work), and reopens a stream the browser gave up on (a 502 from a proxy, a
// restart) with a growing pause — while any page still wants it. (A SharedWorker lives as long as
// one page of its origin does.)
"use strict";

const pages = new Map(); // port -> token
const streams = new Map(); // token -> { source, last, failures, timer }

function broadcast(token, message) {
  for (const [port, t] of pages) if (t === token) port.postMessage(message);
}

function wanted(token) {
  for (const t of pages.values()) if (t === token) return true;
  return false;
}

function open(token) {
  const s = streams.get(token) || { source: null, last: null, failures: 0, timer: null };
  streams.set(token, s);
  if (s.source && s.source.readyState !== 2) return s;
  s.source = new EventSource(`/api/stream?token=${encodeURIComponent(token)}`);
  for (const name of ["hello", "change"]) {
    s.source.addEventListener(name, (e) => {
      s.failures = 0;
      s.last = e.data;
      broadcast(token, { type: name, data: e.data });
    });
  }
  s.source.onerror = () => {
    const closed = s.source.readyState === 2;
    broadcast(token, { type: "error", closed });
    if (closed && !s.timer) {
      // The browser will not retry a stream that got an error answer: we do, while it is wanted.
      s.failures += 1;
      s.timer = setTimeout(() => {
        s.timer = null;
        if (wanted(token)) open(token);
      }, Math.min(1000 * 2 ** s.failures, 30000));
    }
  };
  return s;
}

function forget(port) {
  const token = pages.get(port);
  pages.delete(port);
  if (token !== undefined && !wanted(token)) {
    const s = streams.get(token);
    if (s) {
      if (s.source) s.source.close();
      if (s.timer) clearTimeout(s.timer);
    }
    streams.delete(token);
  }
}

onconnect = (event) => {
  const port = event.ports[0];
  port.onmessage = (m) => {
    if (m.data && m.data.bye) forget(port);
    else if (m.data && typeof m.data.token === "string") {
      if (pages.has(port)) forget(port);
      pages.set(port, m.data.token);
      const s = open(m.data.token);
      if (s.last !== null && s.source.readyState === 1) port.postMessage({ type: "hello", data: s.last });
    }
  };
  port.start();
};
