// The overview: the log's depth, the drain, latency, replicas, the
// applier, readiness and the telemetry lanes, from GET /v1/stats (polled
// every second; the charts keep a client-side window) and GET /readyz.
import {call, request, quiet, APIError} from './api.js';
import {h, bytes, num, seconds, time} from './dom.js';
import {chart, draw} from './chart.js';

const SPAN = 5 * 60 * 1000; // the charts' window
const MIN_SPAN = 60 * 1000; // the charts' shortest x axis
const RATE_OVER = 10 * 1000; // the rates shown as numbers average this

function card(title, ...body) {
  return h('section', {class: 'card', 'aria-label': title}, h('h2', {}, title), ...body);
}

function stat(id, label) {
  return h('div', {class: 'stat'}, h('span', {class: 'value', id}, '—'), h('span', {class: 'label'}, label));
}

export async function overview(main, signal) {
  const writes = chart('Writes per second');
  const applied = chart('Applied per second');
  const ready = h('p', {id: 'readiness', class: 'badge'}, '—');
  const readyWhy = h('p', {id: 'readiness-reason', class: 'reason'});
  const applier = h('div', {id: 'applier'}, '—');
  const replicas = h('div', {id: 'replicas'}, '—');
  const lanes = h('div', {id: 'lanes'}, '—');
  const tables = h('ul', {id: 'tables', class: 'links'});
  const err = h('p', {class: 'msg error', role: 'alert', hidden: true});
  main.append(
    h('h1', {}, 'Overview'), err,
    h('div', {class: 'grid'},
      card('Log', h('div', {class: 'stats'}, stat('log-depth', 'transactions buffered'), stat('log-bytes', 'on disk / in Redis'), stat('overlay-rows', 'rows in the overlay'))),
      card('Drain', h('div', {class: 'stats'}, stat('rate-writes', 'writes/s (10 s)'), stat('rate-applied', 'applied/s (10 s)'), stat('drain-eta', 'to drain at that rate'))),
      card('Totals since start', h('div', {class: 'stats'}, stat('count-queued', 'accepted'), stat('count-applied', 'applied'),
        h('div', {class: 'stat'}, h('a', {class: 'value', id: 'count-failed', href: '/ui/dead-letters'}, '—'), h('span', {class: 'label'}, 'dead-lettered')))),
      card('Acknowledged → applied', h('div', {class: 'stats'}, stat('lat-p50', 'p50'), stat('lat-p99', 'p99'), stat('lat-n', 'transactions, last minute'))),
    ),
    h('div', {class: 'grid wide'},
      card('Writes/s', writes),
      card('Applied/s', applied),
    ),
    h('div', {class: 'grid'},
      card('Readiness', ready, readyWhy),
      card('Applier', applier),
      card('Replicas', replicas),
      card('Telemetry lanes', lanes),
      card('Tables', tables),
    ),
  );
  call('GET', '/v1/tables', undefined, signal).then(({tables: ts}) => {
    tables.replaceChildren(...ts.map((t) => h('li', {}, h('a', {href: '/ui/tables/' + encodeURIComponent(t.name)}, t.name))));
  }).catch((e) => { if (!quiet(e)) tables.replaceChildren(h('li', {}, e.message)); });

  const samples = []; // {t, queued, processed}
  const set = (id, v) => { const el = main.querySelector('#' + id); if (el) el.textContent = v; };

  async function tick() {
    const [st, rz] = await Promise.all([
      call('GET', '/v1/stats', undefined, signal),
      request('GET', '/readyz', undefined, signal),
    ]);
    err.hidden = true;
    const now = Date.now();
    samples.push({t: now, queued: st.queued, processed: st.processed});
    while (samples.length > 2 && samples[0].t < now - SPAN - 2000) samples.shift();
    const rates = (key) => {
      const out = [];
      for (let i = 1; i < samples.length; i++) {
        const a = samples[i - 1], b = samples[i];
        out.push({t: b.t, v: Math.max(0, (b[key] - a[key]) * 1000 / Math.max(1, b.t - a.t))});
      }
      return out;
    };
    const over = (key) => {
      const old = samples.find((p) => p.t >= now - RATE_OVER) || samples[0];
      const last = samples[samples.length - 1];
      return last.t > old.t ? Math.max(0, (last[key] - old[key]) * 1000 / (last.t - old.t)) : null;
    };
    // The x axis spans what the page has seen, a minute at least, five
    // at most: a page just opened shows its first seconds readably.
    const span = Math.min(SPAN, Math.max(MIN_SPAN, now - samples[0].t));
    draw(writes, rates('queued'), span, now, 'Writes per second');
    draw(applied, rates('processed'), span, now, 'Applied per second');

    set('log-depth', num(st.log.depth));
    set('log-bytes', bytes(st.log.bytes));
    set('overlay-rows', num(st.overlay && st.overlay.rows));
    const wr = over('queued');
    let ar = over('processed');
    if (ar === null) ar = st.processing_rate;
    set('rate-writes', wr === null ? '—' : num(wr, 1));
    set('rate-applied', num(ar, 1));
    set('drain-eta', st.log.depth === 0 ? 'drained' : ar > 0 ? seconds(st.log.depth / ar) : 'not draining');
    set('count-queued', num(st.queued));
    set('count-applied', num(st.processed));
    set('count-failed', num(st.failed));
    const lat = st.ack_to_applied || {};
    set('lat-p50', lat.samples ? seconds(lat.p50_seconds) : '—');
    set('lat-p99', lat.samples ? seconds(lat.p99_seconds) : '—');
    set('lat-n', num(lat.samples || 0));

    const ok = rz.status === 200;
    ready.textContent = ok ? 'ready' : 'not ready';
    ready.className = 'badge ' + (ok ? 'ok' : 'bad');
    readyWhy.textContent = ok ? '' : (rz.body && rz.body.error) || 'HTTP ' + rz.status;

    applier.replaceChildren(...applierState(st.applier));
    replicas.replaceChildren(...replicaRows(st.replication));
    lanes.replaceChildren(...laneRows(st.telemetry));
  }

  while (!signal.aborted) {
    try {
      await tick();
    } catch (e) {
      if (quiet(e)) return;
      err.hidden = false;
      err.textContent = e instanceof APIError && e.status === 403
        ? 'The overview needs the admin scope: ' + e.message
        : 'Cannot read the stats: ' + e.message;
      if (e instanceof APIError && e.status === 403) return;
    }
    await new Promise((r) => setTimeout(r, 1000));
  }
}

function applierState(a) {
  if (!a) return [h('p', {}, 'No applier in this process (or its state is not reported).')];
  const out = [];
  let state = a.running ? 'applying' : 'stopped';
  if (a.running && a.backoff && a.backoff.attempt > 0) state = 'backing off';
  if (a.running && a.lease && !a.lease.held) state = 'standing by';
  out.push(h('p', {id: 'applier-state', class: 'badge ' + (state === 'applying' ? 'ok' : state === 'standing by' ? 'info' : 'bad')}, state));
  if (a.lease) out.push(h('p', {}, a.lease.held ? 'This process holds the log\'s lease.' : 'Another process holds the log\'s lease' + (a.lease.holder ? ': ' + a.lease.holder : '') + '.'));
  if (a.backoff && a.backoff.attempt > 0) {
    out.push(h('p', {class: 'reason'}, `Attempt ${a.backoff.attempt} failed: ${a.backoff.last_error || ''}; next retry ${time(a.backoff.next_retry)}`));
  }
  return out;
}

function replicaRows(r) {
  if (!r || !r.replicas || r.replicas.length === 0) return [h('p', {}, 'No read replicas: a transaction is replicated when it commits.')];
  return [
    h('table', {class: 'compact'},
      h('thead', {}, h('tr', {}, h('th', {scope: 'col'}, 'replica'), h('th', {scope: 'col'}, 'up'), h('th', {scope: 'col'}, 'lag'), h('th', {scope: 'col'}, 'replay LSN'))),
      h('tbody', {}, r.replicas.map((x) => h('tr', {class: x.up ? '' : 'bad'},
        h('td', {}, x.name), h('td', {}, x.up ? 'yes' : 'no' + (x.error ? ': ' + x.error : '')), h('td', {}, bytes(x.lag_bytes)), h('td', {}, x.replay_lsn || '—'))))),
    h('p', {}, `${num(r.waiting)} applied transactions wait for the replicas; the oldest for ${seconds(r.lag_seconds)}.`),
  ];
}

function laneRows(ls) {
  if (!ls || ls.length === 0) return [h('p', {}, 'No telemetry lanes.')];
  return ls.map((l) => {
    const pct = Math.min(100, l.utilization_pct || 0);
    const fill = h('div', {class: 'fill'});
    fill.style.width = pct + '%';
    const warn = pct >= 80;
    return h('div', {class: 'lane' + (warn ? ' warn' : '')},
      h('div', {class: 'lane-head'}, h('strong', {}, l.table), h('span', {}, `${num(l.current_size)} / ${num(l.max_size)} (${num(pct, 1)} %)`)),
      h('div', {class: 'gauge', role: 'meter', 'aria-valuemin': 0, 'aria-valuemax': 100, 'aria-valuenow': pct.toFixed(1), 'aria-label': l.table + ' ring fill'}, fill),
      h('p', {class: 'reason'}, `dropped ${num(l.rows_dropped)} · writer ${l.writer ? l.writer.state : '—'}` + (warn ? ' · over 80 %: samples will soon be dropped' : '')));
  });
}
