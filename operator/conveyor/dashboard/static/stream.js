// One event stream for every page of this dashboard in this browser: a browser allows six
// connections per host, and a stream per window would leave none for the pages' own requests.
// Pages connect with their session token; the worker keeps one EventSource per token and passes
// every event on. (A SharedWorker lives as long as one page of its origin does.)
"use strict";

const pages = new Map(); // port -> token
let source = null;
let sourceToken = null;

function broadcast(token, message) {
  for (const [port, t] of pages) if (t === token) port.postMessage(message);
}

function ensure(token) {
  if (source && sourceToken === token) return;
  if (source) source.close();
  sourceToken = token;
  source = new EventSource(`/api/stream?token=${encodeURIComponent(token)}`);
  for (const name of ["hello", "change"]) {
    source.addEventListener(name, (e) => broadcast(token, { type: name, data: e.data }));
  }
  source.onerror = () => broadcast(token, { type: "error", closed: source.readyState === 2 });
}

function forget(port) {
  pages.delete(port);
  if (pages.size === 0 && source) {
    source.close();
    source = null;
    sourceToken = null;
  }
}

onconnect = (event) => {
  const port = event.ports[0];
  port.onmessage = (m) => {
    if (m.data && m.data.bye) forget(port);
    else if (m.data && typeof m.data.token === "string") {
      pages.set(port, m.data.token);
      ensure(m.data.token);
      if (source && source.readyState === 1) port.postMessage({ type: "open" });
    }
  };
  port.start();
};
