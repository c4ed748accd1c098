"""The Lua scripts of the Redis export store: each store rule is enforced inside Redis, atomically.

Redis runs a script as one command: no other client's command runs in between, so reading a
job's state, deciding and writing happen as one step, whichever process sent them (Redis docs,
"Scripting with Lua": https://redis.io/docs/latest/develop/interact/programmability/eval-intro/).

Layout under the key prefix ``P`` (``progress-sync:`` by default):

- ``P job:<id>``: a hash per job. Fields: ``id``, ``status``, ``percent``, ``stage``,
  ``message`` (absent for None), ``seq``, ``createdAt``, ``updatedAt``, ``reportedAt``,
  ``kind``, ``error``, ``result`` (JSON text) (absent for None), ``heartbeatTimeoutS`` (the
  lease in seconds, absent for none), ``attempt`` (absent for 1), ``eta`` (the producer's
  ``etaSeconds`` of the latest update, absent for none), ``rAt`` / ``rPct`` / ``rate`` /
  ``rSpan`` / ``stalled`` (the rate's state, see ``_rate``), ``order`` (registration order),
  ``regToken`` / ``finToken`` (idempotency tokens, so a write retried after a lost reply does
  not fail or count twice). Numbers are stored as the text Python sent, so they round-trip
  exactly; Lua converts them only to compare.
- ``P jobs``: a sorted set of every job id, scored by registration order (``list_jobs``).
- ``P jobs:<status>``: the same, one per status.
- ``P expiry``: a sorted set of job ids scored by when each job expires (seconds since the
  epoch): ``retention`` after its terminal state, or ``idle`` after its latest change.
- ``P leases``: a sorted set of the queued and running jobs that have a lease, scored by when
  the lease runs out (seconds since the epoch); every applied update and heartbeat moves it on,
  and ``EXPIRE_LEASES`` ends the jobs whose time has passed.
- ``P order``: the registration counter.
- ``P changes``: the pub/sub channel; every write publishes the changed snapshots there, as a
  JSON array of flat ``[field, value, ...]`` arrays, in the same atomic step.

Every script takes the prefix as ``ARGV[1]``; keys are built from it (one Redis server or a
primary behind Sentinel; not Redis Cluster, whose scripts must name every key up front).
"""

from __future__ import annotations

DEFAULT_REDIS_PREFIX = "progress-sync:"
"""The key prefix of the Redis store: ``progress-sync:job:<id>``, ``progress-sync:changes``..."""

DEFAULT_IDLE_TIMEOUT = 86400.0
"""Seconds a queued or running job stays in Redis without any change (one day); every change
starts the time again, so a job that is being updated never expires."""

_COMMON = """
local P = ARGV[1]
local STATUSES = {'queued', 'running', 'completed', 'failed', 'cancelled'}
local TERMINAL = {completed = true, failed = true, cancelled = true}

local function job_key(id) return P .. 'job:' .. id end

-- Remove a job and every index entry of it (its hash may have expired already).
local function drop(id)
  redis.call('DEL', job_key(id))
  redis.call('ZREM', P .. 'jobs', id)
  redis.call('ZREM', P .. 'expiry', id)
  redis.call('ZREM', P .. 'leases', id)
  for _, s in ipairs(STATUSES) do redis.call('ZREM', P .. 'jobs:' .. s, id) end
end

-- Tell every process that jobs left the store: a change message whose entries are
-- ['id', id, 'gone', reason] instead of a job hash.
local function publish_gone(ids, reason)
  if #ids > 0 then
    local entries = {}
    for _, id in ipairs(ids) do entries[#entries + 1] = {'id', id, 'gone', reason} end
    redis.call('PUBLISH', P .. 'changes', cjson.encode(entries))
  end
end

-- Drop the jobs whose expiry time has passed (at most 1000 per call).
local function purge(now)
  local ids = redis.call('ZRANGEBYSCORE', P .. 'expiry', '-inf', now, 'LIMIT', 0, 1000)
  for _, id in ipairs(ids) do drop(id) end
  publish_gone(ids, 'expired from the store')
end

local function set_expiry(id, now, ms)
  if ms > 0 then redis.call('PEXPIRE', job_key(id), ms) end
  redis.call('ZADD', P .. 'expiry', tonumber(now) + ms / 1000, id)
end

-- One more attempt (a reset report); the field is absent for attempt 1.
local function next_attempt(key)
  local attempt = tonumber(redis.call('HGET', key, 'attempt') or '1')
  redis.call('HSET', key, 'attempt', attempt + 1)
end

local function publish(snapshots)
  if #snapshots > 0 then
    redis.call('PUBLISH', P .. 'changes', cjson.encode(snapshots))
  end
end
"""

REGISTER = (
    _COMMON
    + """
-- ARGV: prefix, now, idle_ms, id, status, stage, has_message, message, has_kind, kind, token,
--   lease ('' for none, else seconds)
local now, idle_ms, id, status = ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5]
local key = job_key(id)
if redis.call('EXISTS', key) == 1 then
  if redis.call('HGET', key, 'regToken') == ARGV[11] then
    return {'ok', redis.call('HGETALL', key), redis.call('ZCARD', P .. 'jobs')}
  end
  return {'exists'}
end
purge(now)
drop(id)
local order = redis.call('INCR', P .. 'order')
redis.call('HSET', key, 'id', id, 'status', status, 'percent', '0.0', 'stage', ARGV[6],
  'seq', 1, 'createdAt', now, 'updatedAt', now, 'reportedAt', now, 'order', order,
  'regToken', ARGV[11])
if ARGV[7] == '1' then redis.call('HSET', key, 'message', ARGV[8]) end
if ARGV[9] == '1' then redis.call('HSET', key, 'kind', ARGV[10]) end
if ARGV[12] ~= '' then
  redis.call('HSET', key, 'heartbeatTimeoutS', ARGV[12])
  redis.call('ZADD', P .. 'leases', tonumber(now) + tonumber(ARGV[12]), id)
end
redis.call('ZADD', P .. 'jobs', order, id)
redis.call('ZADD', P .. 'jobs:' .. status, order, id)
set_expiry(id, now, idle_ms)
local snapshot = redis.call('HGETALL', key)
publish({snapshot})
return {'ok', snapshot, redis.call('ZCARD', P .. 'jobs')}
"""
)

APPLY_PROGRESS = (
    _COMMON
    + """
-- ARGV: prefix, now, idle_ms, rate tau, rate min sample (see _rate), then 9 per update:
--   id, percent, stage, has_message, message, reported_at, want (1: return its snapshot),
--   eta ('' for none), reset ('1' or '0')
local now, idle_ms = ARGV[2], tonumber(ARGV[3])
local tau, min_sample = tonumber(ARGV[4]), tonumber(ARGV[5])
local applied, ignored_terminal, ignored_stale, lower_kept = 0, 0, 0, 0
local unknown, changed, wanted = {}, {}, {}

-- The rate algorithm of _rate.RateState.advance, on the job hash's rAt, rPct, rate, rSpan,
-- stalled fields (numbers written with 17 significant digits, so they round-trip).
local function advance_rate(key, pct_text, at_text)
  local s = redis.call('HMGET', key, 'rAt', 'rPct', 'rate', 'rSpan', 'stalled')
  if not s[1] then
    redis.call('HSET', key, 'rAt', at_text, 'rPct', pct_text)
    return
  end
  if s[5] == '1' and tonumber(pct_text) > tonumber(s[2]) then
    -- resumed: the next sample starts here
    redis.call('HSET', key, 'rAt', at_text, 'rPct', pct_text, 'stalled', '0')
    return
  end
  local dt = tonumber(at_text) - tonumber(s[1])
  if dt < min_sample then return end
  local advanced = tonumber(pct_text) - tonumber(s[2])
  if advanced <= 0 then
    redis.call('HSET', key, 'rAt', at_text, 'rPct', pct_text, 'stalled', '1')
    return
  end
  local sample = advanced / dt
  local rate = tonumber(s[3])
  if rate == nil then
    rate = sample
  else
    rate = rate + (1 - math.exp(-dt / tau)) * (sample - rate)
  end
  redis.call('HSET', key, 'rAt', at_text, 'rPct', pct_text, 'stalled', '0',
    'rate', string.format('%.17g', rate),
    'rSpan', string.format('%.17g', (tonumber(s[4]) or 0) + dt))
end

for i = 6, #ARGV, 9 do
  local id = ARGV[i]
  local key = job_key(id)
  local current = redis.call('HMGET', key, 'status', 'reportedAt', 'order', 'seq',
    'heartbeatTimeoutS', 'percent')
  if not current[1] then
    unknown[#unknown + 1] = id
  elseif TERMINAL[current[1]] then
    ignored_terminal = ignored_terminal + 1
  elseif tonumber(current[4]) > 1 and tonumber(ARGV[i + 5]) < tonumber(current[2]) then
    -- registration is not an update: the first update is never stale
    ignored_stale = ignored_stale + 1
  else
    local pct = ARGV[i + 1]
    if ARGV[i + 8] == '1' then
      -- a new attempt: percent may go down, the rate starts over
      next_attempt(key)
      redis.call('HDEL', key, 'rate', 'rSpan', 'stalled')
      redis.call('HSET', key, 'rAt', ARGV[i + 5], 'rPct', pct)
    else
      if tonumber(pct) < tonumber(current[6]) then
        pct = current[6]
        lower_kept = lower_kept + 1
      end
      advance_rate(key, pct, ARGV[i + 5])
    end
    redis.call('HINCRBY', key, 'seq', 1)
    redis.call('HSET', key, 'status', 'running', 'percent', pct, 'stage', ARGV[i + 2],
      'updatedAt', now, 'reportedAt', ARGV[i + 5])
    if ARGV[i + 3] == '1' then
      redis.call('HSET', key, 'message', ARGV[i + 4])
    else
      redis.call('HDEL', key, 'message')
    end
    if ARGV[i + 7] ~= '' then
      redis.call('HSET', key, 'eta', ARGV[i + 7])
    else
      redis.call('HDEL', key, 'eta')
    end
    if current[1] ~= 'running' then
      redis.call('ZREM', P .. 'jobs:' .. current[1], id)
      redis.call('ZADD', P .. 'jobs:running', current[3], id)
    end
    set_expiry(id, now, idle_ms)
    if current[5] then
      redis.call('ZADD', P .. 'leases', tonumber(now) + tonumber(current[5]), id)
    end
    applied = applied + 1
    if changed[id] == nil then
      changed[id] = ARGV[i + 6]
      changed[#changed + 1] = id
    elseif ARGV[i + 6] == '1' then
      changed[id] = '1'
    end
  end
end
local snapshots = {}
for _, id in ipairs(changed) do
  local snapshot = redis.call('HGETALL', job_key(id))
  snapshots[#snapshots + 1] = snapshot
  if changed[id] == '1' then wanted[#wanted + 1] = snapshot end
end
publish(snapshots)
return {applied, ignored_terminal, ignored_stale, unknown, wanted,
  redis.call('ZCARD', P .. 'jobs'), lower_kept}
"""
)

FINISH = (
    _COMMON
    + """
-- ARGV: prefix, now, retention_ms, id, status, has_error, error, has_result, result,
--   has_last, percent, stage, has_message, message, reported_at, token, last_reset
local now, retention_ms, id, status = ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5]
local key = job_key(id)
local current = redis.call('HMGET', key, 'status', 'reportedAt', 'order', 'finToken', 'seq',
  'percent')
if not current[1] then return {'notfound'} end
if TERMINAL[current[1]] then
  local outcome = 'terminal'
  if current[4] == ARGV[16] then outcome = 'ok' end
  return {outcome, redis.call('HGETALL', key)}
end
local first_update = tonumber(current[5]) == 1
if ARGV[10] == '1' and (first_update or tonumber(ARGV[15]) >= tonumber(current[2])) then
  -- the pending report, folded in with the monotonic rule of APPLY_PROGRESS
  if ARGV[17] == '1' then
    next_attempt(key)
    redis.call('HSET', key, 'percent', ARGV[11])
  elseif tonumber(ARGV[11]) > tonumber(current[6]) then
    redis.call('HSET', key, 'percent', ARGV[11])
  end
  redis.call('HSET', key, 'stage', ARGV[12])
  if ARGV[13] == '1' then
    redis.call('HSET', key, 'message', ARGV[14])
  else
    redis.call('HDEL', key, 'message')
  end
end
if status == 'completed' then redis.call('HSET', key, 'percent', '100.0') end
local reported = current[2]
if tonumber(now) > tonumber(reported) then reported = now end
redis.call('HINCRBY', key, 'seq', 1)
redis.call('HSET', key, 'status', status, 'updatedAt', now, 'reportedAt', reported,
  'finToken', ARGV[16])
if status ~= 'completed' and ARGV[6] == '1' then
  redis.call('HSET', key, 'error', ARGV[7])
else
  redis.call('HDEL', key, 'error')
end
if status == 'completed' and ARGV[8] == '1' then
  redis.call('HSET', key, 'result', ARGV[9])
else
  redis.call('HDEL', key, 'result')
end
redis.call('ZREM', P .. 'jobs:' .. current[1], id)
redis.call('ZADD', P .. 'jobs:' .. status, current[3], id)
redis.call('ZREM', P .. 'leases', id)
redis.call('HDEL', key, 'eta')
set_expiry(id, now, retention_ms)
local snapshot = redis.call('HGETALL', key)
publish({snapshot})
return {'ok', snapshot}
"""
)

HEARTBEAT = (
    _COMMON
    + """
-- ARGV: prefix, now, idle_ms, id
local now, idle_ms, id = ARGV[2], tonumber(ARGV[3]), ARGV[4]
local key = job_key(id)
local current = redis.call('HMGET', key, 'status', 'heartbeatTimeoutS')
if not current[1] then return {'notfound'} end
if TERMINAL[current[1]] then return {'terminal', redis.call('HGETALL', key)} end
if current[2] then
  redis.call('ZADD', P .. 'leases', tonumber(now) + tonumber(current[2]), id)
end
set_expiry(id, now, idle_ms)
return {'ok', redis.call('HGETALL', key)}
"""
)

EXPIRE_LEASES = (
    _COMMON
    + """
-- ARGV: prefix, now, retention_ms, error template ('{timeout}' is replaced), limit
-- Ends failed every job whose lease ran out, in this one atomic step: a job is taken out of
-- the leases set as it is ended, so of several processes running this at once exactly one
-- ends it.
local now, retention_ms, limit = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[5])
local ids = redis.call('ZRANGEBYSCORE', P .. 'leases', '-inf', now, 'LIMIT', 0, limit)
local ended = {}
for _, id in ipairs(ids) do
  redis.call('ZREM', P .. 'leases', id)
  local key = job_key(id)
  local current = redis.call('HMGET', key, 'status', 'reportedAt', 'order', 'heartbeatTimeoutS')
  if current[1] and not TERMINAL[current[1]] then
    local reported = current[2]
    if tonumber(now) > tonumber(reported) then reported = now end
    local timeout = current[4] or '0'
    local error = string.gsub(ARGV[4], '{timeout}', function() return timeout end)
    redis.call('HINCRBY', key, 'seq', 1)
    redis.call('HSET', key, 'status', 'failed', 'updatedAt', now, 'reportedAt', reported,
      'error', error)
    redis.call('HDEL', key, 'result', 'eta')
    redis.call('ZREM', P .. 'jobs:' .. current[1], id)
    redis.call('ZADD', P .. 'jobs:failed', current[3], id)
    set_expiry(id, now, retention_ms)
    ended[#ended + 1] = redis.call('HGETALL', key)
  end
end
publish(ended)
return ended
"""
)

LIST_JOBS = (
    _COMMON
    + """
-- ARGV: prefix, now, status ('' for all), offset, limit
local now, offset, limit = ARGV[2], tonumber(ARGV[4]), tonumber(ARGV[5])
purge(now)
local index = P .. 'jobs'
if ARGV[3] ~= '' then index = P .. 'jobs:' .. ARGV[3] end
for _ = 1, 5 do
  local page, missing = {}, false
  if limit > 0 then
    for _, id in ipairs(redis.call('ZREVRANGE', index, offset, offset + limit - 1)) do
      local snapshot = redis.call('HGETALL', job_key(id))
      if #snapshot == 0 then
        drop(id)  -- its hash expired before its expiry entry was purged
        publish_gone({id}, 'expired from the store')
        missing = true
      else
        page[#page + 1] = snapshot
      end
    end
  end
  if not missing then
    return {page, redis.call('ZCARD', index), redis.call('ZCARD', P .. 'jobs')}
  end
end
return redis.error_reply('list_jobs: jobs kept expiring while being listed; try again')
"""
)

DELETE = (
    _COMMON
    + """
-- ARGV: prefix, id
local id = ARGV[2]
if redis.call('EXISTS', job_key(id)) == 0 then return 0 end
drop(id)
publish_gone({id}, 'deleted')
return 1
"""
)

SNAPSHOTS = """
-- ARGV: prefix, ids...: the hash of each job, an empty array for a job not held.
local out = {}
for i = 2, #ARGV do out[#out + 1] = redis.call('HGETALL', ARGV[1] .. 'job:' .. ARGV[i]) end
return out
"""

EXISTING = """
-- ARGV: prefix, ids...: 1 for each job held, 0 for each job not held.
local out = {}
for i = 2, #ARGV do out[#out + 1] = redis.call('EXISTS', ARGV[1] .. 'job:' .. ARGV[i]) end
return out
"""
