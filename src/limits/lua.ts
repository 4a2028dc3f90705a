/**
 * The Redis side of the limits, as Lua scripts: each check and its update
 * run atomically, and every timestamp comes from Redis's clock (TIME), so
 * instances with skewed clocks still agree on buckets and lease expiry.
 * The bucket arithmetic is bucket.ts's.
 */
const NOW_MS = `
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end`;

/** Takes a token from the bucket at `key`: 0 when taken, else milliseconds until one is there. */
const TAKE = `
local function take(key, per_minute, now)
  local rate = per_minute / 60000
  local state = redis.call('HMGET', key, 'tokens', 'at')
  local tokens = tonumber(state[1])
  local at = tonumber(state[2])
  if tokens == nil or at == nil then
    tokens = per_minute
    at = now
  end
  tokens = math.min(per_minute, tokens + math.max(0, now - at) * rate)
  if tokens < 1 then
    return math.ceil((1 - tokens) / rate)
  end
  tokens = tokens - 1
  redis.call('HSET', key, 'tokens', tostring(tokens), 'at', tostring(now))
  -- A full bucket is the same as none: the key lives only until it has refilled.
  redis.call('PEXPIRE', key, math.ceil((per_minute - tokens) / rate) + 1000)
  return 0
end`;

/** KEYS[1] address bucket. ARGV: per minute. Returns 0 or the wait in ms. */
export const COUNT_HANDSHAKE = `${NOW_MS}${TAKE}
return take(KEYS[1], tonumber(ARGV[1]), now_ms())`;

/**
 * KEYS[1] the key's leases (sorted set: member = lease, score = expiry ms),
 * KEYS[2] the key's session bucket. ARGV: cap (0 = none), lease ttl ms,
 * lease member, per minute (0 = none).
 * Returns {0, 0} admitted, {1, 0} at the cap, {2, wait ms} out of tokens.
 */
export const ACQUIRE = `${NOW_MS}${TAKE}
local now = now_ms()
local cap = tonumber(ARGV[1])
local ttl = tonumber(ARGV[2])
local per_minute = tonumber(ARGV[4])
if cap > 0 then
  -- Leases of instances that stopped renewing (killed) have expired: they free their slots here.
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
  if redis.call('ZCARD', KEYS[1]) >= cap then
    return {1, 0}
  end
end
if per_minute > 0 then
  local wait = take(KEYS[2], per_minute, now)
  if wait > 0 then
    return {2, wait}
  end
end
if cap > 0 then
  redis.call('ZADD', KEYS[1], now + ttl, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], ttl * 2)
end
return {0, 0}`;

/** KEYS[1] the key's leases. ARGV: lease ttl ms, then the members this instance still holds. */
export const RENEW = `${NOW_MS}
local now = now_ms()
local ttl = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
-- ZADD, not ZADD XX: a lease that expired while Redis was unreachable comes back with its session.
for i = 2, #ARGV do
  redis.call('ZADD', KEYS[1], now + ttl, ARGV[i])
end
redis.call('PEXPIRE', KEYS[1], ttl * 2)
return 0`;
