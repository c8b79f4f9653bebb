-- Apply a batch of outcome events exactly once, then rescore providers; atomic as a whole.
--
-- KEYS: every key the plan names, by index. ARGV[1]: the plan (JSON, built by plan.py);
-- ARGV[1 + i]: the body of event i for the outcome log and the request's explanation.
-- Returns {flags, {provider, score, band, previous band or ""}, ...}: flags has one character
-- per event, "1" new or "0" already seen. The plan's counters are summed over all its events,
-- so they hold only if every event is new: when one is not, the call writes nothing (it deletes
-- the dedupe keys it has just set) and the caller plans the batch again without the "0"s.
-- Field names are rendered from codexpool_shared.activity (Fields, HealthFields) by
-- codexpool_shared.store.scripts.

local plan = cjson.decode(ARGV[1])
-- Numbers handed to redis.call are formatted on every call: format the repeated ones once.
local seen_ttl = tostring(plan.seen_ttl)
local log_max = tostring(plan.log_max)
local explain_ttl = tostring(plan.explain_ttl)
-- events: per event, its dedupe key and its request key (0: explanations off).
local events = plan.events
local count = #events / 2
local flags = {}
-- The key each new event's dedupe set (to undo), and whether its explanation is written yet.
local set = {}
local explained = {}
local fresh = true

-- by_request: the router makes one outcome per request under a fresh request id, so the
-- request's explanation (kept at least as long as a dedupe key) is the dedupe: SET NX of the
-- body, one write and one key per event fewer. A request key taken by another event (a producer
-- reusing request ids) keeps that event's explanation; this one falls back to its seen key.
local function same_event(request, i)
  local stored = redis.call('GET', request)
  if not stored then return false end
  local ok, old = pcall(cjson.decode, stored)
  return ok and type(old) == 'table' and old.event_id == cjson.decode(ARGV[i + 1]).event_id
end

for i = 1, count do
  local seen, request = KEYS[events[2 * i - 1]], events[2 * i]
  request = request > 0 and KEYS[request]
  -- SET NX is the dedupe: only the first delivery of an event_id gets past it.
  if plan.by_request == 1 and redis.call('SET', request, ARGV[i + 1], 'NX', 'EX', explain_ttl) then
    set[i] = request
    explained[i] = true
  elseif plan.by_request == 1 and same_event(request, i) then
    set[i] = false
  elseif redis.call('SET', seen, '1', 'NX', 'EX', seen_ttl) then
    set[i] = seen
    explained[i] = plan.by_request == 1
  else
    set[i] = false
  end
  if set[i] then
    flags[i] = '1'
  else
    flags[i] = '0'
    fresh = false
  end
end
if not fresh then
  -- Undone within this call, so nobody ever sees these keys without their events' counters.
  for i = 1, count do
    if set[i] then redis.call('DEL', set[i]) end
  end
  return {table.concat(flags)}
end

for i = 1, count do
  if plan.log > 0 then
    redis.call('XADD', KEYS[plan.log], 'MAXLEN', '~', log_max, '*', 'e', ARGV[i + 1])
  end
  local request = events[2 * i]
  if request > 0 and not explained[i] then
    redis.call('SET', KEYS[request], ARGV[i + 1], 'EX', explain_ttl)
  end
end

-- recent: pairs of an agent's recent-requests list and its new request ids, oldest first.
-- One LPUSH, LTRIM and EXPIRE per list for the whole batch.
local recent = plan.recent
for j = 1, #recent, 2 do
  local k, ids = recent[j], recent[j + 1]
  for n = 1, #ids, 1000 do
    redis.call('LPUSH', KEYS[k], unpack(ids, n, math.min(n + 999, #ids)))
  end
  redis.call('LTRIM', KEYS[k], 0, plan.recent_max - 1)
  redis.call('EXPIRE', KEYS[k], explain_ttl)
end

-- incr: one HINCRBY per (key, field) for the whole batch: counters are commutative. Every
-- increment of a bucket moves its requests field: when that comes back equal to the increment,
-- this call created the bucket, and only then does it need its TTL (a deadline fixed by the
-- bucket's start).
local created = {}
local inc = plan.incr
for j = 1, #inc, 3 do
  local k, f, n = inc[j], inc[j + 1], inc[j + 2]
  if redis.call('HINCRBY', KEYS[k], f, n) == n and f == '{{Fields.REQUESTS}}' then
    created[k] = true
  end
end
local m = plan.maxima
for j = 1, #m, 3 do
  local k, f, v = KEYS[m[j]], m[j + 1], m[j + 2]
  local current = tonumber(redis.call('HGET', k, f))
  if not current or v > current then redis.call('HSET', k, f, string.format('%.3f', v)) end
end
local e = plan.expire
for j = 1, #e, 2 do
  if created[e[j]] then redis.call('EXPIRE', KEYS[e[j]], e[j + 1]) end
end
if count > 0 and #plan.providers > 0 then
  redis.call('SADD', KEYS[plan.providers_key], unpack(plan.providers))
end

local cfg = plan.cfg
local bounds = cfg.bounds
local nb = #bounds + 1
local fields = {'{{Fields.SUCCESSES}}', '{{Fields.FAULTS}}', '{{Fields.FALLBACKS_AWAY}}'}
for i = 0, nb - 1 do fields[#fields + 1] = '{{Fields.TTFB_PREFIX}}' .. i end

-- Same rule as codexpool_shared.activity.quantile (Prometheus' histogram_quantile).
local function quantile(q, counts, total)
  if total == 0 then return nil end
  local rank = q * total
  local seen = 0
  for i = 1, nb do
    local c = counts[i]
    if c > 0 and seen + c >= rank then
      if i == nb then return bounds[nb - 1] end
      local low = 0
      if i > 1 then low = bounds[i - 1] end
      return low + (bounds[i] - low) * (rank - seen) / c
    end
    seen = seen + c
  end
  return bounds[nb - 1]
end

-- r[5] == 0: rescore only if the stored score is rescore_after seconds old (or from a clock
-- ahead of this one); the batch had no health fault on this provider.
local function due(r)
  if r[5] == 1 then return true end
  local at = tonumber(redis.call('HGET', KEYS[r[2]], '{{HealthFields.UPDATED_AT}}'))
  if not at then return true end
  local age = plan.now - at
  return age < 0 or age >= plan.rescore_after
end

local function rescore(r)
  local s, f, a = 0, 0, 0
  local hist = {}
  for i = 1, nb do hist[i] = 0 end
  for _, mk in ipairs(r[4]) do
    local v = redis.call('HMGET', KEYS[mk], unpack(fields))
    s = s + (tonumber(v[1]) or 0)
    f = f + (tonumber(v[2]) or 0)
    a = a + (tonumber(v[3]) or 0)
    for i = 1, nb do hist[i] = hist[i] + (tonumber(v[3 + i]) or 0) end
  end
  local m = cfg.prior_weight
  local n = s + f
  local success = (s + m * cfg.prior_mean) / (n + m)
  local fallback = 1 - cfg.fallback_penalty * a / (n + m)
  local k = 0
  for i = 1, nb do k = k + hist[i] end
  local p95 = quantile(0.95, hist, k)
  local over = 0
  if p95 then
    over = (p95 - cfg.latency_target_ms) / (cfg.latency_limit_ms - cfg.latency_target_ms)
    if over < 0 then over = 0 elseif over > 1 then over = 1 end
  end
  local latency = 1 - cfg.latency_max_penalty * over * k / (k + m)
  local score = math.floor(100 * success * fallback * latency * 100 + 0.5) / 100
  local band = 'unhealthy'
  if score >= cfg.healthy_min then band = 'healthy' elseif score >= cfg.degraded_min then band = 'degraded' end
  local previous = redis.call('HGET', KEYS[r[2]], '{{HealthFields.BAND}}') or ''
  local last_fault = redis.call('HGET', KEYS[r[3]], '{{Fields.LAST_FAULT_AT}}') or ''
  local raw = cjson.null
  if n > 0 then raw = s / n end
  local components = {
    success_rate = success, raw_success_rate = raw, successes = s, faults = f, samples = n,
    prior_weight = m, prior_mean = cfg.prior_mean, fallbacks_away = a, fallback_factor = fallback,
    latency_p95_ms = p95 or cjson.null, latency_samples = k, latency_factor = latency,
    window_minutes = #r[4],
  }
  local text = string.format('%.2f', score)
  redis.call('HSET', KEYS[r[2]], '{{HealthFields.SCORE}}', text, '{{HealthFields.BAND}}', band,
    '{{HealthFields.COMPONENTS}}', cjson.encode(components),
    '{{HealthFields.UPDATED_AT}}', string.format('%.3f', plan.now),
    '{{HealthFields.LAST_FAULT_AT}}', last_fault)
  return {r[1], text, band, previous}
end

local out = {table.concat(flags)}
for _, r in ipairs(plan.rescore) do
  if due(r) then out[#out + 1] = rescore(r) end
end
return out
