// A table's rows, with the list route's filters (the page's URL carries
// them as the route takes them), buffered rows marked, kept live from
// GET /v1/events (Server-Sent Events: a snapshot, then row changes) or,
// where that route is not served, by polling the list every second.
import {call, open, events, quiet, APIError} from './api.js';
import {h, message} from './dom.js';

const OPS = [
  ['eq', '='], ['neq', '≠'], ['lt', '<'], ['lte', '≤'], ['gt', '>'], ['gte', '≥'],
  ['in', 'in (a,b,…)'], ['is.null', 'is null'], ['not.is.null', 'is not null'],
];
const RESERVED = new Set(['order', 'limit', 'consistency', 'after']);
const POLL = 1000;

export async function table(main, signal, name) {
  const status = h('p', {id: 'table-status', class: 'msg', role: 'status', 'aria-live': 'polite'});
  const mode = h('span', {id: 'live-mode', class: 'badge info'}, 'loading');
  main.append(h('h1', {}, 'Table ', h('code', {}, name), ' ', mode), status);

  let meta;
  try {
    const {tables} = await call('GET', '/v1/tables', undefined, signal);
    meta = tables.find((t) => t.name === name);
  } catch (e) { if (quiet(e)) return; throw e; }
  if (!meta) {
    message(status, 'error', `No table ${name} that this token may read.`);
    return;
  }
  const cols = meta.columns.map((c) => c.name);
  const keyCol = (meta.columns.filter((c) => c.primary_key).length === 1) ? meta.columns.find((c) => c.primary_key).name : null;

  const q = new URLSearchParams(location.search);
  const form = filterForm(cols, q);
  main.append(form);
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    window.dispatchEvent(new CustomEvent('spool:navigate', {detail: location.pathname + queryOf(form)}));
  });

  const tbody = h('tbody', {id: 'rows'});
  main.append(h('div', {class: 'scroll'}, h('table', {class: 'rows'},
    h('caption', {class: 'sr-only'}, `Rows of ${name}; buffered rows are in spool's log and not yet in the database (or its replicas)`),
    h('thead', {}, h('tr', {}, h('th', {scope: 'col'}, 'state'), cols.map((c) => h('th', {scope: 'col'}, c)))), tbody)));

  const listQS = new URLSearchParams(q);
  let rows = []; // {row, buffered}
  const draw = () => {
    tbody.replaceChildren(...rows.map(({row, buffered}) => h('tr', {class: buffered ? 'buffered' : '', 'data-key': keyCol ? String(row[keyCol]) : ''},
      h('td', {}, buffered ? h('span', {class: 'badge info', title: 'in spool\'s log; not yet in the database or its replicas'}, 'buffered') : h('span', {class: 'muted'}, 'stored')),
      cols.map((c) => h('td', {}, cell(row[c]))))));
    if (rows.length === 0) tbody.append(h('tr', {}, h('td', {colspan: cols.length + 1}, 'No rows match.')));
  };

  const list = async () => {
    const r = await call('GET', `/v1/tables/${encodeURIComponent(name)}?${listQS}`, undefined, signal);
    rows = r.rows.map((row, i) => ({row, buffered: !!(r.buffered && r.buffered[i])}));
    draw();
  };

  // poll keeps the page live without the events route.
  const poll = async () => {
    mode.textContent = 'live: polling every second';
    while (!signal.aborted) {
      try {
        await list();
        status.textContent = '';
      } catch (e) {
        if (quiet(e)) return;
        message(status, 'error', 'Cannot read the rows: ' + e.message);
        if (e instanceof APIError && e.status < 500) return;
      }
      await new Promise((r) => setTimeout(r, POLL));
    }
  };

  // stream follows GET /v1/events, resuming after its last message.
  const stream = async () => {
    let last = null;
    while (!signal.aborted) {
      let res;
      try {
        const ev = new URLSearchParams(listQS);
        ev.set('table', name);
        res = await open('/v1/events?' + ev, signal, last);
      } catch (e) {
        if (quiet(e)) return;
        res = null;
      }
      if (res && res.status === 404) return poll();
      if (!res || !res.ok || !(res.headers.get('Content-Type') || '').startsWith('text/event-stream')) {
        const r = res ? await res.text() : '';
        message(status, 'error', 'Live events refused (' + (res ? res.status + ' ' + r : 'no connection') + '); polling instead.');
        return poll();
      }
      mode.textContent = 'live: events';
      // Row messages come with changes; a buffered row that is applied
      // changes nothing, so its mark is asked of the list route while
      // any row is marked.
      const refresh = setInterval(() => {
        if (rows.some((x) => x.buffered)) marks().catch(() => {});
      }, POLL);
      try {
        await events(res, (m) => {
          if (m.id) last = m.id;
          const d = JSON.parse(m.data);
          if (m.event === 'snapshot' || m.event === 'reset') {
            rows = (d.rows || []).map((row) => ({row, buffered: false}));
            draw();
            marks().catch(() => {});
          } else if (m.event === 'row' && d.table === name) {
            onRow(d);
          }
        });
      } catch (e) {
        if (quiet(e)) {
          clearInterval(refresh);
          return;
        }
      }
      clearInterval(refresh);
      mode.textContent = 'reconnecting';
      await new Promise((r) => setTimeout(r, POLL));
    }
  };

  // marks asks the list route which of the snapshot's rows are buffered.
  const marks = async () => {
    const r = await call('GET', `/v1/tables/${encodeURIComponent(name)}?${listQS}`, undefined, signal);
    const m = new Map(r.rows.map((row, i) => [String(row[keyCol]), !!(r.buffered && r.buffered[i])]));
    for (const x of rows) if (m.has(String(x.row[keyCol]))) x.buffered = m.get(String(x.row[keyCol]));
    draw();
  };

  const onRow = (d) => {
    const i = rows.findIndex((x) => keyCol && String(x.row[keyCol]) === String(d.id));
    const buffered = d.state === 'queued' || d.state === 'applied';
    if (!d.row) {
      if (i >= 0) rows.splice(i, 1);
    } else if (i >= 0) {
      rows[i] = {row: d.row, buffered};
    } else {
      rows.unshift({row: d.row, buffered});
    }
    draw();
  };

  try {
    await list();
  } catch (e) {
    if (quiet(e)) return;
    message(status, 'error', 'Cannot read the rows: ' + e.message);
    return;
  }
  // The events route's first answer is the probe: where it is not
  // served (404) the page polls the list instead.
  return keyCol ? stream() : poll();
}

function cell(v) {
  if (v === null || v === undefined) return h('span', {class: 'muted'}, 'null');
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

// filterForm is the list route's filters as a form: one line a filter,
// then the order and the limit.
function filterForm(cols, q) {
  const lines = h('div', {id: 'filter-lines'});
  let n = 0;
  const line = (col = cols[0], op = 'eq', value = '') => {
    const i = n++;
    const colSel = h('select', {id: `fc-${i}`, class: 'f-col'}, cols.map((c) => h('option', {value: c, selected: c === col}, c)));
    const opSel = h('select', {id: `fo-${i}`, class: 'f-op'}, OPS.map(([v, label]) => h('option', {value: v, selected: v === op}, label)));
    const val = h('input', {id: `fv-${i}`, class: 'f-val', value});
    const rm = h('button', {type: 'button', class: 'link'}, 'Remove');
    const el = h('div', {class: 'filter-line'},
      h('label', {for: `fc-${i}`, class: 'sr-only'}, 'Column'), colSel,
      h('label', {for: `fo-${i}`, class: 'sr-only'}, 'Operator'), opSel,
      h('label', {for: `fv-${i}`, class: 'sr-only'}, 'Value'), val, rm);
    rm.addEventListener('click', () => el.remove());
    lines.append(el);
    return el;
  };
  for (const [k, v] of q) {
    if (RESERVED.has(k) || !cols.includes(k)) continue;
    const [op, value] = parseFilter(v);
    line(k, op, value);
  }
  const add = h('button', {type: 'button', id: 'add-filter'}, 'Add a filter');
  add.addEventListener('click', () => line().querySelector('select').focus());
  const [ocol, odir] = (q.get('order') || '').split('.');
  return h('form', {id: 'table-filter', class: 'filters'},
    h('fieldset', {}, h('legend', {}, 'Filters'), lines, add),
    h('div', {}, h('label', {for: 'f-order'}, 'Order by'),
      h('select', {id: 'f-order'}, h('option', {value: ''}, 'key'), cols.map((c) => h('option', {value: c, selected: c === ocol}, c)))),
    h('div', {}, h('label', {for: 'f-dir'}, 'Direction'),
      h('select', {id: 'f-dir'}, h('option', {value: 'asc'}, 'ascending'), h('option', {value: 'desc', selected: odir === 'desc'}, 'descending'))),
    h('div', {}, h('label', {for: 'f-limit'}, 'Limit'), h('input', {id: 'f-limit', type: 'number', min: 1, value: q.get('limit') || '', placeholder: 'default'})),
    h('div', {class: 'actions'}, h('button', {type: 'submit', id: 'apply-filter'}, 'Apply')));
}

function parseFilter(v) {
  if (v === 'is.null' || v === 'not.is.null') return [v, ''];
  const m = v.match(/^(eq|neq|lt|lte|gt|gte|in)\.(.*)$/s);
  if (!m) return ['eq', v];
  if (m[1] === 'in') return ['in', m[2].replace(/^\(|\)$/g, '')];
  return [m[1], m[2]];
}

// queryOf is the list route's query string of the form.
function queryOf(form) {
  const q = new URLSearchParams();
  for (const el of form.querySelectorAll('.filter-line')) {
    const col = el.querySelector('.f-col').value, op = el.querySelector('.f-op').value, v = el.querySelector('.f-val').value;
    if (op === 'is.null' || op === 'not.is.null') q.append(col, op);
    else if (op === 'in') q.append(col, 'in.(' + v + ')');
    else q.append(col, op + '.' + v);
  }
  const order = form.querySelector('#f-order').value;
  if (order) q.set('order', order + '.' + form.querySelector('#f-dir').value);
  const limit = form.querySelector('#f-limit').value;
  if (limit) q.set('limit', limit);
  const s = q.toString();
  return s ? '?' + s : '';
}
