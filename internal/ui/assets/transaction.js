// A transaction's state timeline: queued → applied (with its LSN) →
// replicated, or failed with the database's error; refreshed (a long
// poll with ?wait=) until the state is final.
import {call, allows, quiet, APIError} from './api.js';
import {h, time} from './dom.js';

const STEPS = [
  ['queued', 'queued_at', 'in spool\'s log, acknowledged to the writer'],
  ['applied', 'applied_at', 'committed on the primary'],
  ['replicated', 'replicated_at', 'on every read replica; out of the overlay'],
];

export async function transaction(main, signal, id) {
  const head = h('p', {id: 'tx-state', class: 'badge'}, '…');
  const who = h('p', {id: 'tx-principal'});
  const steps = h('ol', {id: 'timeline', class: 'timeline'});
  const extra = h('div', {id: 'tx-extra'});
  const err = h('p', {class: 'msg error', role: 'alert', hidden: true});
  main.append(h('h1', {}, 'Transaction ', h('code', {class: 'id'}, id)), err, head, who,
    h('h2', {}, 'Timeline'), steps, extra);

  let wait = '';
  while (!signal.aborted) {
    let st;
    try {
      st = await call('GET', '/v1/transactions/' + encodeURIComponent(id) + wait, undefined, signal);
    } catch (e) {
      if (quiet(e)) return;
      err.hidden = false;
      err.textContent = e instanceof APIError ? e.message : 'Cannot read the transaction: ' + e.message;
      if (e instanceof APIError && e.status < 500) return;
      await new Promise((r) => setTimeout(r, 1000));
      continue;
    }
    err.hidden = true;
    drawTimeline(st, head, who, steps);
    if (st.state === 'replicated' || st.state === 'failed') {
      if (st.state === 'failed' && allows('admin')) await deadLetter(id, extra, signal);
      return;
    }
    // The next state, waited for on the server (long poll).
    wait = '?wait=' + (st.state === 'queued' ? 'applied' : 'replicated') + '&timeout=10s';
  }
}

function drawTimeline(st, head, who, steps) {
  head.textContent = st.state;
  head.className = 'badge ' + (st.state === 'failed' ? 'bad' : st.state === 'replicated' ? 'ok' : 'info');
  who.textContent = st.principal ? 'Sent by ' + st.principal : '';
  const order = ['queued', 'applied', 'replicated'];
  const reached = st.state === 'failed' ? 0 : order.indexOf(st.state);
  const items = STEPS.map(([name, key, what], i) => {
    if (st.state === 'failed' && i > 0) return null;
    const done = i <= reached;
    return h('li', {class: done ? 'done' : 'pending', 'data-step': name},
      h('strong', {}, name), ' ', h('time', {datetime: st[key] || ''}, done ? time(st[key]) : 'not yet'),
      name === 'applied' && st.lsn ? h('span', {class: 'lsn'}, ' LSN ' + st.lsn) : null,
      h('span', {class: 'what'}, what));
  });
  if (st.state === 'failed') {
    items.push(h('li', {class: 'failed', 'data-step': 'failed'},
      h('strong', {}, 'failed'), ' ', h('time', {datetime: st.failed_at || ''}, time(st.failed_at)),
      st.code ? h('span', {class: 'code'}, ' ' + st.code) : null,
      h('span', {class: 'what tx-error'}, st.error || 'refused by the database')));
  }
  steps.replaceChildren(...items.filter(Boolean));
}

// deadLetter links a failed transaction to its dead letter and retry.
async function deadLetter(id, extra, signal) {
  try {
    const dl = await call('GET', '/v1/dlq/' + id, undefined, signal);
    extra.replaceChildren(h('p', {},
      'A dead letter: ', h('a', {href: '/ui/dead-letters'}, 'see the dead letters'),
      dl.retried_as ? [' · retried as ', h('a', {href: '/ui/transactions/' + dl.retried_as, id: 'retried-as'}, dl.retried_as), dl.retried_by ? ' by ' + dl.retried_by : ''] : null,
      dl.dropped_by ? ' · dropped by ' + dl.dropped_by + ' at ' + time(dl.dropped_at) : null));
  } catch (e) {
    if (!quiet(e)) extra.replaceChildren(h('p', {}, 'No dead letter: ' + e.message));
  }
}
