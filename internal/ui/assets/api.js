// The dashboard's one way to the API. The token lives in this tab's
// sessionStorage and goes out as an Authorization: Bearer header, never
// as a cookie, so another site cannot make the browser send it (no
// CSRF). A 401 from any call asks for the login.

const KEY = 'spool.token';

export const token = {
  get: () => sessionStorage.getItem(KEY),
  set: (t) => sessionStorage.setItem(KEY, t),
  clear: () => sessionStorage.removeItem(KEY),
};

// Unauthorized is thrown by call on a 401, after the login is shown.
export class Unauthorized extends Error {}

// APIError is a refused call: status and the API's error message.
export class APIError extends Error {
  constructor(status, msg, body) { super(msg); this.status = status; this.body = body; }
}

// request sends one call and returns {status, body}; only a 401 and a
// network failure throw.
export async function request(method, path, body, signal) {
  const headers = {Accept: 'application/json'};
  const t = token.get();
  if (t) headers.Authorization = 'Bearer ' + t;
  const init = {method, headers, signal, credentials: 'omit', cache: 'no-store'};
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const res = await fetch(path, init);
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = {error: text}; }
  if (res.status === 401) {
    window.dispatchEvent(new CustomEvent('spool:login', {detail: (data && data.error) || 'credentials needed'}));
    throw new Unauthorized((data && data.error) || 'unauthorized');
  }
  return {status: res.status, body: data, headers: res.headers};
}

// call is request that throws an APIError unless the answer is 2xx.
export async function call(method, path, body, signal) {
  const r = await request(method, path, body, signal);
  if (r.status < 200 || r.status > 299) {
    throw new APIError(r.status, (r.body && r.body.error) || ('HTTP ' + r.status), r.body);
  }
  return r.body;
}

// me is who the API says we are ({name, scopes}), set by app.js.
export const me = {name: '', scopes: []};

// allows reports whether our scopes cover action on table ('admin' takes
// no table).
export function allows(action, table) {
  if (action === 'admin') return me.scopes.includes('admin');
  return me.scopes.includes(action + ':' + table) || me.scopes.includes(action + ':*');
}

// quiet ignores the errors a page that went away gets (aborted calls) and
// the 401s the login already answers.
export function quiet(err) {
  return err instanceof Unauthorized || (err && err.name === 'AbortError');
}

// open starts a streaming GET (Server-Sent Events) with our credentials:
// EventSource cannot send an Authorization header, so the stream is read
// with fetch. It returns the Response; a 401 asks for the login.
export async function open(path, signal, lastEventID) {
  const headers = {Accept: 'text/event-stream'};
  const t = token.get();
  if (t) headers.Authorization = 'Bearer ' + t;
  if (lastEventID) headers['Last-Event-ID'] = lastEventID;
  const res = await fetch(path, {headers, signal, credentials: 'omit', cache: 'no-store'});
  if (res.status === 401) {
    window.dispatchEvent(new CustomEvent('spool:login', {detail: 'credentials needed'}));
    throw new Unauthorized('unauthorized');
  }
  return res;
}

// events reads the SSE messages of res, calling on({event, data, id})
// for each, until the stream ends.
export async function events(res, on) {
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  for (;;) {
    const {value, done} = await reader.read();
    if (done) return;
    buf = (buf + value).replace(/\r\n?/g, '\n');
    let i;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const block = buf.slice(0, i);
      buf = buf.slice(i + 2);
      const msg = {event: 'message', data: '', id: null};
      const data = [];
      for (const line of block.split('\n')) {
        if (line === '' || line.startsWith(':')) continue;
        const c = line.indexOf(':');
        const field = c < 0 ? line : line.slice(0, c);
        const v = c < 0 ? '' : line.slice(c + 1).replace(/^ /, '');
        if (field === 'event') msg.event = v;
        else if (field === 'data') data.push(v);
        else if (field === 'id') msg.id = v;
      }
      if (data.length === 0) continue;
      msg.data = data.join('\n');
      on(msg);
    }
  }
}
