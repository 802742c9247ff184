// Talking to the server: the token lives in this tab's sessionStorage and travels as a bearer
// header (no cookie, so no request can be forged from another site). Server-Sent Events are read
// through fetch, because EventSource cannot send an Authorization header.

const KEY = "gpuledger.token";

export const token = {
  get: () => sessionStorage.getItem(KEY),
  set: (value) => sessionStorage.setItem(KEY, value),
  clear: () => sessionStorage.removeItem(KEY),
};

function headers(extra = {}) {
  const secret = token.get();
  return secret ? { ...extra, Authorization: `Bearer ${secret}` } : extra;
}

export class HttpError extends Error {
  constructor(status, detail) { super(detail); this.status = status; }
}

export async function request(method, path, params = {}) {
  const url = new URL(path, location.origin);
  for (const [k, v] of Object.entries(params)) if (v !== null && v !== undefined && v !== "") url.searchParams.set(k, v);
  const answer = await fetch(url, { method, headers: headers({ Accept: "application/json" }) });
  const body = await answer.json().catch(() => ({}));
  if (!answer.ok) throw new HttpError(answer.status, body.detail || answer.statusText);
  return body;
}

export const get = (path, params) => request("GET", path, params);

// A file answer (not JSON): its bytes and the name the server gives it.
export async function fetchFile(path) {
  const answer = await fetch(new URL(path, location.origin), { headers: headers() });
  if (!answer.ok) {
    const body = await answer.json().catch(() => ({}));
    throw new HttpError(answer.status, body.detail || answer.statusText);
  }
  const named = (answer.headers.get("Content-Disposition") || "").match(/filename="([^"]+)"/);
  return { blob: await answer.blob(), name: named ? named[1] : null };
}
export const post = (path, params) => request("POST", path, params);

// Follow an SSE endpoint; reconnects with Last-Event-ID after a dropped connection, so nothing is
// lost or repeated. Returns a function that stops it.
export function follow(path, onEvent, { lastId = null, onOpen = null } = {}) {
  const stop = new AbortController();
  let retries = 0;
  (async () => {
    while (!stop.signal.aborted && retries < 30) {
      try {
        const extra = { Accept: "text/event-stream" };
        if (lastId !== null) extra["Last-Event-ID"] = lastId;
        const answer = await fetch(path, { headers: headers(extra), signal: stop.signal });
        if (answer.status === 401 || answer.status === 403 || answer.status === 404) return;
        if (onOpen) onOpen();
        retries = 0;
        const done = await readEvents(answer.body, (event) => {
          if (event.id !== null) lastId = event.id;
          return onEvent(event);
        });
        if (done) return;
      } catch (error) {
        if (stop.signal.aborted) return;
      }
      retries += 1;
      await new Promise((resolve) => setTimeout(resolve, Math.min(5000, 250 * 2 ** retries)));
    }
  })();
  return () => stop.abort();
}

// Parse the text/event-stream format; a handler returning true ends the stream.
async function readEvents(body, handle) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "", carry = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return false;
    let raw = carry + value;
    carry = raw.endsWith("\r") ? "\r" : "";  // a CRLF cut between two chunks
    if (carry) raw = raw.slice(0, -1);
    buffer += raw.replace(/\r\n?/g, "\n");
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      const event = { event: "message", id: null, data: [] };
      for (const line of block.split("\n")) {
        if (!line || line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        const text = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "data") event.data.push(text);
        else if (field === "event") event.event = text;
        else if (field === "id") event.id = text;
      }
      event.data = event.data.join("\n");
      if (!event.data) continue;  // a keep-alive comment
      if (handle(event) === true) { reader.cancel(); return true; }
    }
  }
}
