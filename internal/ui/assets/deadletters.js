// Dead letters: the list with its filters (table, code, since: the page's
// URL carries them), each one's operations and the database's error;
// edit the operations and retry, retry all of a table, drop. Every
// dead-letter route needs admin: without it the page says so and shows
// no action.
import {call, allows, quiet, APIError} from './api.js';
import {h, time, message} from './dom.js';

export async function deadLetters(main, signal) {
  const q = new URLSearchParams(location.search);
  const status = h('p', {id: 'dlq-status', class: 'msg', role: 'status', 'aria-live': 'polite'});
  main.append(h('h1', {}, 'Dead letters'), status);
  if (!allows('admin')) {
    message(status, 'info', 'Dead letters need the admin scope, which this token does not hold: nothing to show or act on.');
    return;
  }
  const tableSel = h('select', {id: 'f-table', name: 'table'}, h('option', {value: ''}, 'any'));
  const form = h('form', {id: 'dlq-filter', class: 'filters'},
    h('div', {}, h('label', {for: 'f-table'}, 'Table'), tableSel),
    h('div', {}, h('label', {for: 'f-code'}, 'Error code starts with'), h('input', {id: 'f-code', name: 'code', value: q.get('code') || '', placeholder: '23 or SQLITE_CONSTRAINT'})),
    h('div', {}, h('label', {for: 'f-since'}, 'Failed since'), h('input', {id: 'f-since', name: 'since', type: 'datetime-local', step: 1, value: localInput(q.get('since'))})),
    h('div', {class: 'actions'}, h('button', {type: 'submit'}, 'Filter')),
  );
  const retryAll = h('button', {id: 'retry-all', type: 'button', hidden: true}, 'Retry all of this table');
  const list = h('div', {id: 'dlq-list', class: 'dlq-list'});
  main.append(form, h('div', {class: 'toolbar'}, retryAll), list);

  try {
    const {tables} = await call('GET', '/v1/tables', undefined, signal);
    for (const t of tables) tableSel.append(h('option', {value: t.name}, t.name));
  } catch (e) { if (quiet(e)) return; }
  tableSel.value = q.get('table') || '';

  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const n = new URLSearchParams();
    if (tableSel.value) n.set('table', tableSel.value);
    const code = form.querySelector('#f-code').value.trim();
    if (code) n.set('code', code);
    const since = form.querySelector('#f-since').value;
    if (since) n.set('since', new Date(since).toISOString());
    window.dispatchEvent(new CustomEvent('spool:navigate', {detail: '/ui/dead-letters' + (n.toString() ? '?' + n : '')}));
  });

  const table = q.get('table');
  if (table) {
    retryAll.hidden = false;
    retryAll.textContent = 'Retry all of ' + table;
    retryAll.addEventListener('click', async () => {
      try {
        const r = await call('POST', '/v1/dlq/retry?table=' + encodeURIComponent(table), undefined, signal);
        const failed = r.retried.filter((x) => x.error);
        message(status, failed.length ? 'error' : 'ok', `Retried ${r.retried.length - failed.length} of ${r.retried.length}` +
          (failed.length ? '; refused: ' + failed.map((x) => x.retry_of + ': ' + x.error).join('; ') : '.'));
        for (const x of r.retried) if (!x.error) document.getElementById('dl-' + x.retry_of)?.remove();
      } catch (e) { if (!quiet(e)) message(status, 'error', 'Retry all failed: ' + e.message); }
    });
  }

  async function load() {
    const api = new URLSearchParams();
    for (const k of ['table', 'code', 'since']) if (q.get(k)) api.set(k, q.get(k));
    api.set('limit', '100');
    let r;
    try {
      r = await call('GET', '/v1/dlq?' + api, undefined, signal);
    } catch (e) {
      if (!quiet(e)) message(status, 'error', 'Cannot list the dead letters: ' + e.message);
      return;
    }
    list.replaceChildren();
    if (r.dead_letters.length === 0) list.append(h('p', {id: 'dlq-empty'}, 'No dead letters match.'));
    for (const dl of r.dead_letters) list.append(item(dl, status, signal));
    if (r.next) list.append(h('p', {}, 'More match than shown here (100); narrow the filter.'));
  }
  await load();
}

// item draws one dead letter with its actions.
function item(dl, status, signal) {
  const id = dl.transaction.id;
  const ops = dl.transaction.operations.map(editable);
  const admin = allows('admin');
  const area = h('textarea', {id: 'ops-' + id, class: 'ops', rows: Math.min(20, JSON.stringify(ops, null, 2).split('\n').length + 1), spellcheck: 'false', readonly: !admin},
    JSON.stringify(ops, null, 2));
  const note = h('p', {class: 'msg', role: 'status', 'aria-live': 'polite'});
  const tables = [...new Set(dl.transaction.operations.map((o) => o.table))].join(', ');
  const el = h('article', {class: 'dl', id: 'dl-' + id, 'aria-labelledby': 'dl-title-' + id},
    h('h2', {id: 'dl-title-' + id}, h('a', {href: '/ui/transactions/' + id}, id)),
    h('dl', {class: 'facts'},
      h('dt', {}, 'tables'), h('dd', {}, tables),
      h('dt', {}, 'code'), h('dd', {class: 'code'}, dl.code || '—'),
      h('dt', {}, 'error'), h('dd', {class: 'dl-error'}, dl.error),
      h('dt', {}, 'sent by'), h('dd', {}, dl.transaction.principal || '—'),
      h('dt', {}, 'attempts'), h('dd', {}, String(dl.attempts)),
      h('dt', {}, 'failed'), h('dd', {}, time(dl.first_failed_at) + (dl.attempts > 1 ? ' … ' + time(dl.last_failed_at) : '')),
      dl.transaction.retry_of && [h('dt', {}, 'retry of'), h('dd', {}, h('a', {href: '/ui/transactions/' + dl.transaction.retry_of}, dl.transaction.retry_of))],
    ),
    h('label', {for: 'ops-' + id}, 'Operations (JSON; edit them to retry corrected)'), area, note);
  if (admin) {
    const retry = h('button', {type: 'button', class: 'retry', id: 'retry-' + id}, 'Retry');
    const drop = h('button', {type: 'button', class: 'drop danger', id: 'drop-' + id}, 'Drop');
    retry.addEventListener('click', async () => {
      let body;
      const text = area.value.trim();
      if (text !== JSON.stringify(ops, null, 2)) {
        const err = validate(text);
        if (err) { message(note, 'error', err); area.setAttribute('aria-invalid', 'true'); area.focus(); return; }
        body = {operations: JSON.parse(text)};
      }
      area.removeAttribute('aria-invalid');
      try {
        const r = await call('POST', '/v1/dlq/' + id + '/retry', body, signal);
        message(status, 'ok', `Retried ${id} as ${r.transaction_id}.`);
        status.append(' ', h('a', {href: '/ui/transactions/' + r.transaction_id, id: 'retried-link'}, 'Follow it'));
        // Out of the list: the queue records the retry once it is
        // queued, so a list read at once may still hold it.
        el.remove();
      } catch (e) { if (!quiet(e)) message(note, 'error', 'Retry refused: ' + e.message); }
    });
    drop.addEventListener('click', async () => {
      if (drop.dataset.armed !== 'yes') {
        drop.dataset.armed = 'yes';
        drop.textContent = 'Confirm drop';
        message(note, 'info', 'Dropping keeps who and when, but the transaction is never applied. Press again to drop.');
        return;
      }
      try {
        const r = await call('DELETE', '/v1/dlq/' + id, undefined, signal);
        message(status, 'ok', `Dropped ${id} (by ${r.by}).`);
        el.remove();
      } catch (e) { if (!quiet(e)) message(note, 'error', 'Drop refused: ' + (e instanceof APIError ? e.message : e)); }
    });
    el.append(h('div', {class: 'actions'}, retry, drop));
  }
  return el;
}

// editable is an operation as POST /v1/transactions takes it back.
function editable(o) {
  const e = {op: o.op, table: o.table};
  if (o.op !== 'insert') e.id = o.id; // an insert's key is among its values, or generated
  if (o.values) e.values = o.values;
  if (o.as) e.as = o.as;
  return e;
}

// validate checks edited operations before they are sent: a JSON list of
// objects each with an op and a table. The API checks the rest.
function validate(text) {
  let v;
  try { v = JSON.parse(text); } catch (e) { return 'Not JSON: ' + e.message; }
  if (!Array.isArray(v) || v.length === 0) return 'The operations must be a non-empty JSON list.';
  for (const [i, o] of v.entries()) {
    if (!o || typeof o !== 'object' || Array.isArray(o)) return `Operation ${i} must be an object.`;
    if (!['insert', 'update', 'upsert', 'delete'].includes(o.op)) return `Operation ${i}: op must be insert, update, upsert or delete.`;
    if (typeof o.table !== 'string' || !o.table) return `Operation ${i}: table must be named.`;
    if (o.op !== 'insert' && o.id === undefined) return `Operation ${i}: ${o.op} needs an id.`;
  }
  return '';
}

// localInput turns an RFC 3339 time into a datetime-local input's value.
function localInput(t) {
  if (!t) return '';
  const d = new Date(t);
  if (Number.isNaN(d.getTime())) return '';
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}
