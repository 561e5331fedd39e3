package redislog

import "github.com/redis/go-redis/v9"

// The Lua scripts. Each runs atomically in Redis: no other command runs
// between its first and last step, and Redis writes its effects to the AOF
// as one MULTI/EXEC block, so a crash never leaves half of one behind.
//
// Every key a script touches starts with the log's prefix, so they share
// the {name} hash tag and a Redis Cluster slot. The keys a script builds
// (rows, tables, transactions) cannot all be passed in KEYS, since the
// script finds them as it goes; KEYS carries the fixed keys, which routes
// the call to the right node.

// appendScript appends a group of transactions to the stream and adds their
// changes to the overlay, in order: each change to its row's list and to its
// table's list of changes (as the entry, '\n', the key; one RPUSH per table
// for the whole group), counted in the table's counters (see tableScript;
// made, with a new epoch, by the first change to the table).
//
// Each transaction appended also goes, queued, to the events stream (one
// XADD, trimmed to about maxlen entries, of its id and its operations in
// the compact form of encodeOps), so that live events never miss an
// acknowledged write, even if the process that appended it dies.
//
//	KEYS: stream, tables, counts, events
//	ARGV: prefix, key retention (ms), events maxlen, then per transaction:
//	      id, payload (JSON), idempotency key ("" if none), its record, ops
//	      (encodeOps), n (operations), then n times: table, key, entry
//	      (JSON of an opEntry)
//
// It returns each transaction's stream id. A transaction already pending
// (its hash has a "pos") is not appended again: its stream id is returned.
// This makes a retried call (go-redis retries a call whose connection broke
// before the reply) harmless. A transaction whose idempotency key an
// earlier write took (its "idem:" key exists) is not appended either: it
// returns "dup:" and that write's record. A key is taken, for the
// retention, in the same step as its write's append.
var appendScript = redis.NewScript(`
local stream, tables, counts, events, p, keep, maxlen = KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[1], ARGV[2], ARGV[3]
local out = {}
local txs, rows, ops = 0, 0, 0
local pushed, pushedOrder = {}, {} -- changes for each table's list, in order
local i = 4
while i <= #ARGV do
  local id, payload, ikey, irec, evops, n = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], tonumber(ARGV[i + 5])
  i = i + 6
  local txkey = p .. 'tx:' .. id
  local pos = redis.call('HGET', txkey, 'pos')
  if pos then
    i = i + 3 * n
  elseif ikey ~= '' and not redis.call('SET', p .. 'idem:' .. ikey, irec, 'NX', 'PX', keep) then
    i = i + 3 * n
    pos = 'dup:' .. redis.call('GET', p .. 'idem:' .. ikey)
  else
    pos = redis.call('XADD', stream, '*', 'tx', payload)
    redis.call('XADD', events, 'MAXLEN', '~', maxlen, '*', 's', 'q', 'tx', id, 'ops', evops)
    txs = txs + 1
    local fields, perRow = {'pos', pos}, {}
    for _ = 1, n do
      local tbl, key, entry = ARGV[i], ARGV[i + 1], ARGV[i + 2]
      i = i + 3
      local member = #tbl .. ':' .. tbl .. ':' .. key
      if redis.call('RPUSH', p .. 'row:' .. member, entry) == 1 then
        rows = rows + 1
      end
      if not pushed[tbl] then
        pushed[tbl] = {}
        pushedOrder[#pushedOrder + 1] = tbl
      end
      local changes = pushed[tbl]
      changes[#changes + 1] = entry .. '\n' .. key
      if perRow[member] then
        perRow[member] = perRow[member] + 1
      else
        perRow[member] = 1
        fields[#fields + 1] = member
        fields[#fields + 1] = 0 -- set below
      end
    end
    ops = ops + n
    for f = 3, #fields, 2 do
      fields[f + 1] = perRow[fields[f]]
    end
    -- One HSET per 500 rows: unpack has a stack limit.
    for f = 1, #fields, 1000 do
      redis.call('HSET', txkey, unpack(fields, f, math.min(f + 999, #fields)))
    end
  end
  out[#out + 1] = pos
end
if txs > 0 then
  redis.call('HINCRBY', counts, 'txs', txs)
  redis.call('HINCRBY', counts, 'rows', rows)
  redis.call('HINCRBY', counts, 'ops', ops)
end
-- Each table's changes go to its list at once (one RPUSH per 1,000:
-- unpack has a stack limit), after the call's transactions, in their
-- order: a write in a script costs more than the command itself.
for _, tbl in ipairs(pushedOrder) do
  local list, changes = p .. 'ops:' .. tbl, pushed[tbl]
  for f = 1, #changes, 1000 do
    local last = math.min(f + 999, #changes)
    if redis.call('RPUSH', list, unpack(changes, f, last)) == last then
      redis.call('SADD', tables, tbl)
    end
  end
  local seq, n = p .. 'seq:' .. tbl, #changes
  if redis.call('HINCRBY', seq, 'a', n) == n then
    local t = redis.call('TIME')
    redis.call('HSET', seq, 'e', t[1] .. '.' .. t[2], 'h', 0, 'x', 0)
  end
end
return out
`)

// evictScript removes transactions from the overlay: their entries from the
// rows they touched and from those rows' tables' lists of changes, tables
// left without changes from the tables set, and their hashes.
//
// It gathers, from the hashes of the transactions still pending, how many
// of the call's entries each row's and each table's list holds, then
// takes them out of each list once:
//
//   - A list holds every entry of each pending transaction that touched
//     it, so a list as long as the call's entries in it holds nothing
//     else: it is deleted unread.
//   - Otherwise the applier evicts in log order, so the entries are at
//     the list's head: the first n are read, and trimmed off if each is
//     one of the call's.
//   - Otherwise (Withdraw evicts out of order) the list is scanned from
//     its head for each transaction's entries, and each found is removed
//     with LREM.
//
// Keys left with nothing (the hashes, the lists emptied) go in one DEL at
// the end: a write a script makes costs more than the command itself, and
// one DEL of many keys costs about what one DEL of one key does. A
// table's counters record which way its list lost the changes (h:
// changes dropped from the head; x: evictions from elsewhere), which
// table reads go by (see tableScript).
//
//	KEYS: stream (for routing only), tables, counts
//	ARGV: prefix, then per transaction: id, entry prefix
//
// It returns how many of the transactions were pending.
var evictScript = redis.NewScript(`
local tables, counts, p = KEYS[2], KEYS[3], ARGV[1]
local txs, rows, ops = 0, 0, 0
local doomed = {} -- keys to delete at the end
-- remove takes want elements beginning with pre out of a list, scanning
-- from its head, and returns how many it took.
local function remove(list, pre, want)
  local removed, start = 0, 0
  while removed < want do
    local chunk = redis.call('LRANGE', list, start, start + 127)
    if #chunk == 0 then break end
    for _, v in ipairs(chunk) do
      if removed < want and string.sub(v, 1, #pre) == pre then
        -- Every earlier element equal to v was removed already, so the
        -- first occurrence from the head is this one.
        redis.call('LREM', list, 1, v)
        removed = removed + 1
      else
        start = start + 1
      end
    end
  end
  return removed
end
local evicting = {} -- entry prefix of each pending transaction of the call
local pending = {}  -- per pending transaction: its entry prefix, its entries per row and per table
local perRow, rowOrder, perTable, tableOrder = {}, {}, {}, {}
for i = 2, #ARGV, 2 do
  local id, pre = ARGV[i], ARGV[i + 1]
  local txkey = p .. 'tx:' .. id
  local fields = redis.call('HGETALL', txkey)
  -- A transaction named twice counts once: its hash goes only at the end.
  if #fields > 0 and not evicting[pre] then
    txs = txs + 1
    evicting[pre] = true
    local t = {pre = pre, rows = {}, tables = {}}
    for f = 1, #fields, 2 do
      local member = fields[f]
      if member ~= 'pos' then
        local want = tonumber(fields[f + 1])
        local len = string.match(member, '^(%d+):')
        local s = #len + 2
        local tbl = string.sub(member, s, s + tonumber(len) - 1)
        t.rows[member] = want
        t.tables[tbl] = (t.tables[tbl] or 0) + want
        if not perRow[member] then
          perRow[member] = 0
          rowOrder[#rowOrder + 1] = member
        end
        perRow[member] = perRow[member] + want
        if not perTable[tbl] then
          perTable[tbl] = 0
          tableOrder[#tableOrder + 1] = tbl
        end
        perTable[tbl] = perTable[tbl] + want
      end
    end
    pending[#pending + 1] = t
    doomed[#doomed + 1] = txkey
  end
end
-- An element is one of the call's if its entry prefix is (a table's
-- list adds '\n' and the row's key after the entry). Transaction ids
-- holding '"' or '\\' fail the pattern and take the scan.
local ours = function(v)
  local pre = string.match(v, '^({"tx":"[^"\\]*",)')
  return pre ~= nil and evicting[pre] == true
end
-- take removes the call's n entries from list, which holds them, and
-- returns how many it removed, whether they were its first ones and
-- whether it is left empty. When they are not its first ones, it removes
-- each pending transaction's entries wherever they are: as many as its
-- field (rows or tables) has under name.
local function take(list, n, field, name)
  local len = redis.call('LLEN', list)
  if len == n then
    doomed[#doomed + 1] = list
    return n, true, true
  end
  if len > n then
    local head, all = redis.call('LRANGE', list, 0, n - 1), true
    for j = 1, n do
      if not ours(head[j]) then
        all = false
        break
      end
    end
    if all then
      redis.call('LTRIM', list, n, -1)
      return n, true, false
    end
  end
  local removed = 0
  for _, t in ipairs(pending) do
    local want = t[field][name]
    if want then
      removed = removed + remove(list, t.pre, want)
    end
  end
  return removed, false, redis.call('EXISTS', list) == 0
end
for _, member in ipairs(rowOrder) do
  local removed, _, gone = take(p .. 'row:' .. member, perRow[member], 'rows', member)
  ops = ops + removed
  if gone then
    rows = rows + 1
  end
end
for _, tbl in ipairs(tableOrder) do
  local seq = p .. 'seq:' .. tbl
  local _, head, gone = take(p .. 'ops:' .. tbl, perTable[tbl], 'tables', tbl)
  if head then
    redis.call('HINCRBY', seq, 'h', perTable[tbl])
  else
    redis.call('HINCRBY', seq, 'x', 1)
  end
  if gone then
    redis.call('SREM', tables, tbl)
  end
end
-- One DEL per 500 keys: unpack has a stack limit.
for f = 1, #doomed, 500 do
  redis.call('DEL', unpack(doomed, f, math.min(f + 499, #doomed)))
end
if txs > 0 then
  -- 0 - n, not -n: Lua's -0 would reach Redis as "-0", not an integer.
  redis.call('HINCRBY', counts, 'txs', 0 - txs)
  redis.call('HINCRBY', counts, 'rows', 0 - rows)
  redis.call('HINCRBY', counts, 'ops', 0 - ops)
end
return txs
`)

// tableScript reads a table's list of changes, or only what was added to
// it since the reader's last read. spool:{n}:seq:<table> counts the
// changes ever added to the list (a), those dropped from its head (h), and
// the evictions that removed changes from elsewhere in it (x), under an
// epoch (e) drawn when the hash was made. While e and x are what they were
// at a reader's last read, the list is what the reader read then, plus the
// changes added since, less its first h - (the reader's h) changes: the
// reader keeps the rest of what it read and needs only the list past them.
//
//	KEYS: stream (for routing only)
//	ARGV: prefix, table, then the reader's e, a, h, x and how many changes
//	      it read ("", -1, -1, -1, -1 for none)
//
// It returns e, a, h, x, then 1 and the list past the changes the reader
// keeps, or 0 and the whole list.
var tableScript = redis.NewScript(`
local p, tbl = ARGV[1], ARGV[2]
local list = p .. 'ops:' .. tbl
local c = redis.call('HMGET', p .. 'seq:' .. tbl, 'e', 'a', 'h', 'x')
local e, a, h, x = c[1] or '', tonumber(c[2]) or 0, tonumber(c[3]) or 0, tonumber(c[4]) or 0
local re, ra, rh, rx, rn = ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local out = {e, a, h, x}
local from = 0
if re == e and e ~= '' and rx == x and 0 <= rh and rh <= h and ra <= a and rn >= 0 then
  out[5] = 1
  from = math.max(rn - (h - rh), 0)
else
  out[5] = 0
end
for _, v in ipairs(redis.call('LRANGE', list, from, -1)) do
  out[#out + 1] = v
end
return out
`)

// migrateScript brings a log to the current key layout, once, in one
// atomic step. A log written before layout 2 keeps, per table, a set of
// the keys of its pending rows (spool:{n}:tbl:<table>) and no list of
// changes: the script builds each table's list from its rows' lists (row
// after row, each row's changes in log order, which is the order reads
// need), gives it counters under a new epoch (see tableScript), and
// deletes the sets. A log with no layout key and nothing pending is new,
// and only gets the key.
//
//	KEYS: layout, tables
//	ARGV: prefix, the current version
//
// It returns the version the log had (0 if none: it has the current one
// now; -1 if the key holds no number), which it leaves alone, and how many
// changes it moved into tables' lists.
var migrateScript = redis.NewScript(`
local layout, tables, p = KEYS[1], KEYS[2], ARGV[1]
local v = redis.call('GET', layout)
if v then return {tonumber(v) or -1, 0} end
local moved = 0
for _, tbl in ipairs(redis.call('SMEMBERS', tables)) do
  local set, list = p .. 'tbl:' .. tbl, p .. 'ops:' .. tbl
  for _, key in ipairs(redis.call('SMEMBERS', set)) do
    local entries = redis.call('LRANGE', p .. 'row:' .. #tbl .. ':' .. tbl .. ':' .. key, 0, -1)
    for _, e in ipairs(entries) do
      redis.call('RPUSH', list, e .. '\n' .. key)
    end
    moved = moved + #entries
  end
  redis.call('DEL', set)
  local t = redis.call('TIME')
  redis.call('HSET', p .. 'seq:' .. tbl, 'e', t[1] .. '.' .. t[2], 'a', redis.call('LLEN', list), 'h', 0, 'x', 0)
end
redis.call('SET', layout, ARGV[2])
return {0, moved}
`)

// ackScript acknowledges entries and deletes them from the stream, each
// only if it was pending in the group: an entry never claimed is not
// deleted, and acknowledging twice is harmless.
//
// It acknowledges them with one XACK, then trims. Every entry up to the
// group's last delivered one was delivered, and every entry older than
// the oldest still pending is not pending, so it was acknowledged: XTRIM
// MINID up to the older of the two bounds takes exactly entries that are
// acknowledged, whole nodes at a time, where XDEL of each id marks it
// deleted in its node. Entries acknowledged here at or past that bound
// (acknowledged out of order, behind an entry still pending) are deleted
// with XDEL, so the stream still holds exactly the entries not yet
// acknowledged. An entry past the last delivered one was never claimed:
// XACK leaves it pending in no list, and the script never deletes it.
//
//	KEYS: stream
//	ARGV: group, the newest of the ids, then the ids
//
// It returns how many entries were pending.
var ackScript = redis.NewScript(`
-- id returns the two parts of a stream id as numbers (exact: the
-- milliseconds have 13 digits and the sequence is small).
local function id(s)
  local ms, seq = string.match(s, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
local function before(ams, aseq, bms, bseq)
  return ams < bms or (ams == bms and aseq < bseq)
end
local stream, group = KEYS[1], ARGV[1]
local acked = 0
-- One XACK per 1,000 entries: unpack has a stack limit.
for i = 3, #ARGV, 1000 do
  acked = acked + redis.call('XACK', stream, group, unpack(ARGV, i, math.min(i + 999, #ARGV)))
end
if acked == 0 then return 0 end
-- The group's last delivered entry.
local lastMs, lastSeq
for _, g in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
  local name, last
  for j = 1, #g, 2 do
    if g[j] == 'name' then name = g[j + 1] elseif g[j] == 'last-delivered-id' then last = g[j + 1] end
  end
  if name == group then lastMs, lastSeq = id(last) end
end
-- The first entry that may stay: the one after the last delivered, or
-- the oldest pending if that is older.
local minMs, minSeq = lastMs, lastSeq + 1
local pending = redis.call('XPENDING', stream, group)
if pending[1] > 0 then
  local ms, seq = id(pending[2])
  if before(ms, seq, minMs, minSeq) then minMs, minSeq = ms, seq end
end
redis.call('XTRIM', stream, 'MINID', string.format('%d-%d', minMs, minSeq))
local newestMs, newestSeq = id(ARGV[2])
if before(newestMs, newestSeq, minMs, minSeq) then return acked end
-- Some were acknowledged behind an entry still pending: delete those,
-- which were delivered and are no longer pending.
local left = {}
for i = 3, #ARGV do
  local ms, seq = id(ARGV[i])
  if not before(ms, seq, minMs, minSeq) and not before(lastMs, lastSeq, ms, seq) then
    left[#left + 1] = ARGV[i]
  end
end
for i = 1, #left, 1000 do
  redis.call('XDEL', stream, unpack(left, i, math.min(i + 999, #left)))
end
return acked
`)

// leaseAcquireScript takes the lease if nobody holds it and, in the same
// step, draws the next fencing token, so that no holder is ever without a
// token.
//
//	KEYS: lease, fence
//	ARGV: our value, TTL in milliseconds
//
// It returns the token, or 0 if the lease is held.
var leaseAcquireScript = redis.NewScript(`
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return redis.call('INCR', KEYS[2])
end
return 0
`)

// leaseRenewScript extends the lease if it still holds our value.
//
//	KEYS: lease
//	ARGV: our value, TTL in milliseconds
//
// It returns 1 if renewed, 0 if the lease is gone or someone else's.
var leaseRenewScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
`)

// leaseReleaseScript deletes the lease if it still holds our value.
//
//	KEYS: lease
//	ARGV: our value
var leaseReleaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
`)

// takeOverScript moves to this consumer entries pending under other
// consumers of the group (XAUTOCLAIM … JUSTID), only while this process
// holds the log's lease, in the same step: an applier that lost its
// lease while it took entries over (it was stopped mid-way) must not move
// entries the new holder claimed into its own pending list.
//
//	KEYS: stream, lease
//	ARGV: group, consumer, lease value ("" for a log without a lease),
//	      min idle time in milliseconds, start id, count
//
// It returns XAUTOCLAIM's reply: {next start id, ids moved, ids deleted}.
// Not holding the lease is a NOTHOLDER error.
var takeOverScript = redis.NewScript(`
local stream, lease = KEYS[1], KEYS[2]
local group, consumer, holder = ARGV[1], ARGV[2], ARGV[3]
if holder ~= '' and redis.call('GET', lease) ~= holder then
  return redis.error_reply('NOTHOLDER this process does not hold the log lease')
end
return redis.call('XAUTOCLAIM', stream, group, consumer, ARGV[4], ARGV[5], 'COUNT', ARGV[6], 'JUSTID')
`)
