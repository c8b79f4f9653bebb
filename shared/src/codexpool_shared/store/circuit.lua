-- The circuit backoff, for every script that opens a circuit (codexpool_shared.store.live):
-- open the circuit of the live hash `live` for base_ms * 2^(opens-1), capped at max_ms, and
-- stamp when it opened (failures of attempts that started earlier no longer count).
-- Returns the new open-until (epoch ms).
local function open_circuit(live, now, base_ms, max_ms)
  local opens = redis.call('HINCRBY', live, '{{LiveFields.CIRCUIT_OPENS}}', 1)
  local open_until = now + math.min(base_ms * 2 ^ (opens - 1), max_ms)
  redis.call('HSET', live, '{{LiveFields.CIRCUIT_OPEN_UNTIL}}', open_until,
    '{{LiveFields.CIRCUIT_OPENED_AT}}', now)
  return open_until
end
