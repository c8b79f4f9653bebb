-- Authentication + selection in one round trip (see selection.py for the contract).
-- Key names are built here, from the namespace's prefix (ARGV[11]) and the rest of each key as
-- Keys spells it (the table T, rendered above this text by selection.py): the keys depend on
-- what the script reads (agent -> pool -> members). Every key of a namespace shares its hash tag,
-- so they are all in the slot of KEYS[1] (Keys.slot_key, never written), which a Redis Cluster
-- routes the call by and lets the script touch.
-- Field names are rendered from their Python definitions (scripts.py).
{{> circuit}}
local now = tonumber(ARGV[2])
local sdig = ARGV[3]
local max_attempts = tonumber(ARGV[4])
local threshold = tonumber(ARGV[5])
local grace = tonumber(ARGV[6])
local aff_ttl = tonumber(ARGV[7])
local probe_ms = tonumber(ARGV[8])
local base_ms = tonumber(ARGV[9])
local max_ms = tonumber(ARGV[10])
local tag_start = tonumber(ARGV[15])
local P = ARGV[11]
local function key(t, a) return P .. t[1] .. a .. t[2] end

local agent = redis.call('GET', key(T.api_key, ARGV[1]))
if not agent then return '{"e":"unauthorized"}' end
-- The agent's own limits (store/agents.py), before anything is chosen or counted.
local lim = redis.call('HMGET', key(T.agent, agent), '{{AgentFields.LIMIT_EXPIRES_AT}}',
  '{{AgentFields.LIMIT_MODELS}}', '{{AgentFields.LIMIT_TOKENS_PER_DAY}}',
  '{{AgentFields.LIMIT_REQUESTS_PER_MINUTE}}')
local count_tokens = 0
if lim[1] or lim[2] or lim[3] or lim[4] then
  local expires = tonumber(lim[1] or '')
  if expires and now >= expires * 1000 then return cjson.encode({e = 'agent_expired', a = agent}) end
  if lim[2] then
    local allowed = false
    for _, name in ipairs(cjson.decode(lim[2])) do
      if name == ARGV[12] then allowed = true; break end
    end
    if not allowed then return cjson.encode({e = 'model_not_allowed', a = agent}) end
  end
  local tpd = tonumber(lim[3] or '')
  if tpd then
    count_tokens = 1
    local day = math.floor(now / 86400000)
    local used = tonumber(redis.call('GET',
      P .. T.agent_tokens[1] .. agent .. T.agent_tokens[2] .. day .. T.agent_tokens[3]) or '0')
    if used >= tpd then
      return cjson.encode({e = 'agent_limit', a = agent, l = 'tokens_per_day', r = (day + 1) * 86400000})
    end
  end
  local rpm = tonumber(lim[4] or '')
  if rpm then
    -- A sliding window: this minute's request ids by arrival; a refused request is not added.
    local window = key(T.agent_requests, agent)
    redis.call('ZREMRANGEBYSCORE', window, '-inf', now - 60000)
    if redis.call('ZCARD', window) >= rpm then
      local first = redis.call('ZRANGE', window, 0, 0, 'WITHSCORES')
      return cjson.encode({e = 'agent_limit', a = agent, l = 'requests_per_minute',
        r = tonumber(first[2]) + 60000})
    end
    redis.call('ZADD', window, now, ARGV[13])
    redis.call('PEXPIRE', window, 60000)
  end
end
local pool = redis.call('HMGET', key(T.pool, agent), '{{PoolFields.STRATEGY}}',
  '{{PoolFields.PROVIDERS}}', '{{PoolFields.VERSION}}', '{{PoolFields.PRIORITIES}}',
  '{{PoolFields.EARLIEST_RESET}}')
if not pool[1] then return cjson.encode({e = 'no_pool', a = agent}) end
local strategy = pool[1]
local members = cjson.decode(pool[2])
-- Member priority rank (c[14]): 0 burn_first, 1 normal, 2 preserve.
local ranks = {burn_first = 0, preserve = 2}
local prio = pool[4] and cjson.decode(pool[4]) or nil
local function rank(name) return prio and ranks[prio[name]] or 1 end

-- Each member's live state: l[1] to l[5], its health score (l[6], written into the same hash by
-- the health service), then its quota windows (l[7] to l[12]) in a quota-aware pool only, the
-- one strategy that reads them (a field read costs the script).
local live_fields = {'{{LiveFields.COOLDOWN_UNTIL}}', '{{LiveFields.COOLDOWN_REASON}}',
  '{{LiveFields.CIRCUIT_OPEN_UNTIL}}', '{{LiveFields.CIRCUIT_CLOSED_AT}}', '{{LiveFields.FAILURES}}',
  '{{HealthFields.SCORE}}'}
if strategy == 'quota-aware' then
  for _, f in ipairs({'{{LiveFields.PRIMARY_USED_PERCENT}}', '{{LiveFields.PRIMARY_WINDOW_MINUTES}}',
      '{{LiveFields.PRIMARY_RESETS_AT}}', '{{LiveFields.SECONDARY_USED_PERCENT}}',
      '{{LiveFields.SECONDARY_WINDOW_MINUTES}}', '{{LiveFields.SECONDARY_RESETS_AT}}'}) do
    live_fields[#live_fields + 1] = f
  end
end
local eligible, half_open, snap = {}, {}, {}
local quota_wait, other_wait, dead = 0, 0, 0
-- Members skipped by the hard filter, for the request's explanation: {name, reason, until ms}.
local skipped = {}
local function earliest(current, t) if current == 0 or t < current then return t end return current end

for i, name in ipairs(members) do
  local p = redis.call('HMGET', key(T.provider, name), '{{ProviderFields.STATUS}}',
    '{{ProviderFields.ACCOUNT_ID}}', '{{ProviderFields.ACCESS_TOKEN}}',
    '{{ProviderFields.ACCESS_EXPIRES_AT}}', '{{ProviderFields.CREDENTIAL_VERSION}}',
    '{{ProviderFields.MAX_CONCURRENT}}')
  local live = key(T.live, name)
  local l = redis.call('HMGET', live, unpack(live_fields))
  -- The token itself stays here: its tag tells the router whether its decrypted copy is current.
  local cand = {name, p[2] or '', string.sub(p[3] or '', tag_start), p[4] or '',
    p[5] or '0', 0, tonumber(l[5] or '0') or 0, i, l}
  cand[14] = rank(name)
  cand[16] = tonumber(p[6] or '')
  if p[1] ~= 'active' then
    dead = dead + 1
    table.insert(skipped, {name, p[1] or 'not_registered', 0})
  else
    table.insert(snap, cand)
    local cooldown = tonumber(l[1] or '0') or 0
    local open_until = tonumber(l[3] or '0') or 0
    local closed_at = tonumber(l[4] or '0') or 0
    if cooldown > now then
      if l[2] == 'usage_limit' then quota_wait = earliest(quota_wait, cooldown); cand[13] = 1
      else other_wait = earliest(other_wait, cooldown) end
      cand[12] = cooldown
      table.insert(skipped, {name, 'cooldown:' .. (l[2] or ''), cooldown})
    else
      if open_until == 0 and threshold > 0 and now > closed_at + grace then
        local score = tonumber(l[6] or '')
        if score and score < threshold then
          open_until = open_circuit(live, now, base_ms, max_ms)
        end
      end
      if open_until > now then
        other_wait = earliest(other_wait, open_until)
        cand[12] = open_until
        table.insert(skipped, {name, 'circuit_open', open_until})
      elseif open_until > 0 then
        table.insert(half_open, cand)
      else
        table.insert(eligible, cand)
      end
    end
  end
end

-- A preserve member serves only while no other member is eligible (not even as a probe or
-- through session affinity); it stays a failover candidate behind the others.
local spare = false
if prio then
  for _, c in ipairs(eligible) do if c[14] < 2 then spare = true; break end end
  if not spare then for _, c in ipairs(half_open) do if c[14] < 2 then spare = true end end end
end
local sticky, aff_key = nil, nil
if sdig ~= '' then
  aff_key = P .. T.affinity[1] .. agent .. T.affinity[2] .. sdig .. T.affinity[3]
  sticky = redis.call('GET', aff_key)
end
local order = {}
local sticky_hit = false
if sticky then
  for _, c in ipairs(eligible) do
    if c[1] == sticky and not (spare and c[14] == 2) then
      table.insert(order, c); sticky_hit = true
    end
  end
end
if not sticky_hit then
  -- Half-open members: the one replica that wins the probe lock sends this request there.
  for _, c in ipairs(half_open) do
    if spare and c[14] == 2 then
      other_wait = earliest(other_wait, now + probe_ms)
    elseif redis.call('SET', key(T.probe_lock, c[1]), '1', 'NX', 'PX', probe_ms) then
      c[6] = 1
      redis.call('HSET', key(T.live, c[1]), '{{LiveFields.LAST_PROBE_AT}}', now)
      table.insert(order, c)
    else
      other_wait = earliest(other_wait, now + probe_ms)
      table.insert(skipped, {c[1], 'probe_in_progress', now + probe_ms})
    end
  end
end

local rest = {}
for _, c in ipairs(eligible) do
  if not (sticky_hit and c[1] == sticky) then table.insert(rest, c) end
end
local m = #rest
-- Priority tiers in rank order, each in pool order (one tier when no priority is set).
local tiers = {rest}
if prio and m > 0 then
  tiers = {{}, {}, {}}
  for _, c in ipairs(rest) do table.insert(tiers[c[14] + 1], c) end
end
if m > 0 and strategy ~= 'primary-first' and not sticky_hit then
  -- One shared counter rotates every tier: exact round-robin within the tier in use.
  local turn = redis.call('INCR', key(T.rr_counter, agent)) - 1
  local rotated = {}
  for _, tier in ipairs(tiers) do
    local k = #tier
    for j = 0, k - 1 do
      local c = tier[((turn + j) % k) + 1]
      c[10] = #rotated
      table.insert(rotated, c)
    end
  end
  rest = rotated
elseif prio and m > 0 then
  rest = {}
  for _, tier in ipairs(tiers) do for _, c in ipairs(tier) do table.insert(rest, c) end end
end
-- Lower is better: used percent, discounted by how soon the window resets.
local function pressure(l)
  local worst = 0
  for w = 0, 1 do
    local used = tonumber(l[7 + 3 * w] or '')
    if used then
      local window = (tonumber(l[8 + 3 * w] or '') or 0) * 60000
      local resets = (tonumber(l[9 + 3 * w] or '') or 0) * 1000
      local share = 1
      if window > 0 and resets > 0 then
        share = math.max(0, math.min(1, (resets - now) / window))
      end
      worst = math.max(worst, used * share)
    end
  end
  return worst
end
-- The earliest reset (epoch s) of a window with a snapshot; math.huge without one.
local function next_reset(l)
  local t = math.huge
  for w = 0, 1 do
    local resets = tonumber(l[9 + 3 * w] or '') or 0
    if resets > 0 and resets < t then t = resets end
  end
  return t
end
if strategy == 'quota-aware' then
  local by_reset = pool[5] == '1'
  for _, c in ipairs(rest) do
    c[11] = pressure(c[9])
    if by_reset then c[15] = next_reset(c[9]) end
  end
  table.sort(rest, function(a, b)
    if a[14] ~= b[14] then return a[14] < b[14] end
    if by_reset and a[15] ~= b[15] then return a[15] < b[15] end
    if a[11] ~= b[11] then return a[11] < b[11] end
    return (a[10] or a[8]) < (b[10] or b[8])
  end)
end
for _, c in ipairs(rest) do table.insert(order, c) end

-- Concurrency caps (leases.py): a capped member with every slot leased is passed over (the
-- request goes to the next one); the first candidate's lease is taken here, a later one's by
-- the router when it fails over.
-- Eligible members left out (at their cap, or past the attempt limit) are named for the
-- request's explanation.
local at_cap = 0
local limit = math.min(#members, max_attempts)
local out, passed = {}, {}
for _, c in ipairs(order) do
  local cap, room = c[16], #out < limit
  if room and cap then
    local leases = key(T.provider_leases, c[1])
    redis.call('ZREMRANGEBYSCORE', leases, '-inf', now)
    room = redis.call('ZCARD', leases) < cap
    if room and #out == 0 then
      redis.call('ZADD', leases, now + tonumber(ARGV[14]), ARGV[13] .. ':' .. c[1])
    end
    if not room then at_cap = at_cap + 1 end
  end
  if room then
    table.insert(out, {c[1], c[2], c[3], c[4], c[5], c[6], c[7], cap or 0})
  else
    table.insert(passed, c[1])
  end
end
if aff_key and #out > 0 and not sticky_hit then
  redis.call('SET', aff_key, out[1][1], 'PX', aff_ttl)
elseif aff_key and sticky_hit then
  redis.call('PEXPIRE', aff_key, aff_ttl)
end
-- The router's fail-open snapshot, when it asks for one (ARGV[16] '1'; encoding it costs about a
-- fifth of the script): every active member in pool order, with its token tag, the end of its
-- known unavailability (0: eligible or half-open), 1 if that is a quota cooldown, its quota
-- pressure (quota-aware pools only) and its priority rank.
local m = nil
if ARGV[16] == '1' then
  m = {}
  for _, c in ipairs(snap) do
    local used = 0
    if strategy == 'quota-aware' then used = c[11] or pressure(c[9]) end
    table.insert(m, {c[1], c[2], c[3], c[4], c[5], c[12] or 0, c[13] or 0, used, c[14]})
  end
end
return cjson.encode({a = agent, s = strategy, v = tonumber(pool[3]), n = #members, c = out,
  q = quota_wait, w = other_wait, d = dead, m = m, x = skipped, y = passed,
  k = sticky_hit and 1 or 0, t = count_tokens, b = at_cap})
