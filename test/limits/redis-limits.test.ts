import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RelayError } from '../../src/errors.js';
import { RedisLimits } from '../../src/limits/index.js';
import { startTcpProxy } from '../hardening/tcp-proxy.js';
import { dropPrefix, probeRedis, REDIS_REQUIRED, TEST_REDIS_URL, uniquePrefix } from './redis-probe.js';
import { NO_LIMITS, refusal } from './refusal.js';

const absent = await probeRedis();
if (absent && REDIS_REQUIRED) throw new Error(`REQUIRE_REDIS=1 but ${absent}`);
if (absent) console.warn(`skipping the Redis limits tests: ${absent} (set REQUIRE_REDIS=1 to fail instead)`);

describe.skipIf(absent !== null)('limits shared through Redis', () => {
  const prefixes: string[] = [];
  const opened: RedisLimits[] = [];
  let redis: Redis;

  beforeAll(() => {
    redis = new Redis(TEST_REDIS_URL);
  });
  afterAll(async () => {
    for (const limits of opened) await limits.close();
    for (const prefix of prefixes) await dropPrefix(prefix);
    redis.disconnect();
  });

  async function instances(count: number, options: Partial<Parameters<typeof RedisLimits.connect>[0]> = {}, url = TEST_REDIS_URL) {
    const prefix = options.prefix ?? uniquePrefix('limits');
    prefixes.push(prefix);
    const made: RedisLimits[] = [];
    for (let i = 0; i < count; i++) {
      const { limits } = await RedisLimits.connect({ ...NO_LIMITS, url, prefix, leaseTtlMs: 15_000, ...options });
      opened.push(limits);
      made.push(limits);
    }
    return { prefix, made };
  }

  it("holds a key's concurrent sessions across instances", async () => {
    const { made: [a, b] } = await instances(2, { maxSessionsPerKey: 2 });
    const releaseA = await a!.acquire({ keyId: 'k', maxSessions: null });
    await b!.acquire({ keyId: 'k', maxSessions: null });
    expect((await refusal(a!.acquire({ keyId: 'k', maxSessions: null }))).code).toBe('rate_limit_exceeded');
    expect((await refusal(b!.acquire({ keyId: 'k', maxSessions: null }))).status).toBe(429);
    await b!.acquire({ keyId: 'another', maxSessions: null });
    releaseA();
    // The release is on its way to Redis; B sees the slot free once it lands.
    await expect.poll(() => b!.acquire({ keyId: 'k', maxSessions: null }).then(() => true, () => false), { timeout: 2_000, interval: 20 }).toBe(true);
    expect(a!.heldLeases).toBe(0);
    expect(b!.heldLeases).toBe(3);
  });

  it('frees the slot of a lease its instance stopped renewing', async () => {
    const { prefix, made: [a] } = await instances(1, { maxSessionsPerKey: 1, leaseTtlMs: 1_000 });
    const leases = `${prefix}{key:dead}:leases`;
    // What a killed instance leaves behind: a lease whose expiry has passed.
    await redis.zadd(leases, Date.now() - 1, 'killed-instance:1');
    await a!.acquire({ keyId: 'dead', maxSessions: null });
    expect(await redis.zrange(leases, 0, -1)).not.toContain('killed-instance:1');
    // A live lease does hold its slot.
    await redis.zadd(`${prefix}{key:alive}:leases`, Date.now() + 60_000, 'other-instance:1');
    await refusal(a!.acquire({ keyId: 'alive', maxSessions: null }));
  });

  it('renews the leases it holds from one timer, past their ttl', async () => {
    const { prefix, made: [a, b] } = await instances(2, { maxSessionsPerKey: 1, leaseTtlMs: 1_000 });
    await a!.acquire({ keyId: 'k', maxSessions: null });
    const leases = `${prefix}{key:k}:leases`;
    const [, firstExpiry] = await redis.zrange(leases, 0, 0, 'WITHSCORES');
    // Wait for two renewals by watching the expiry move, then check the slot is still held past the ttl.
    await expect.poll(async () => Number((await redis.zrange(leases, 0, 0, 'WITHSCORES'))[1]) - Number(firstExpiry), { timeout: 3_000, interval: 50 }).toBeGreaterThan(600);
    await refusal(b!.acquire({ keyId: 'k', maxSessions: null }));
  });

  it('shares the new-sessions bucket across instances and says when to retry', async () => {
    const { made: [a, b] } = await instances(2, { sessionsPerMinute: 3 });
    (await a!.acquire({ keyId: 'k', maxSessions: null }))();
    (await b!.acquire({ keyId: 'k', maxSessions: null }))();
    (await a!.acquire({ keyId: 'k', maxSessions: null }))();
    const error = await refusal(b!.acquire({ keyId: 'k', maxSessions: null }));
    expect(error.code).toBe('rate_limit_exceeded');
    // One token every 20 s, and most of one is missing.
    expect(error.retryAfterSeconds).toBeGreaterThanOrEqual(19);
    expect(error.retryAfterSeconds).toBeLessThanOrEqual(20);
    await b!.acquire({ keyId: 'other', maxSessions: null });
  });

  it('shares the handshake bucket of an address across instances', async () => {
    const { made: [a, b] } = await instances(2, { handshakesPerMinutePerIp: 2 });
    await a!.countHandshake('198.51.100.4');
    await b!.countHandshake('::ffff:198.51.100.4');
    expect((await refusal(a!.countHandshake('198.51.100.4'))).retryAfterSeconds).toBe(30);
    await b!.countHandshake('198.51.100.5');
  });

  it('leaves nothing behind in Redis once the sessions are gone and the buckets refill', async () => {
    const { prefix, made: [a] } = await instances(1, { maxSessionsPerKey: 2, sessionsPerMinute: 600 });
    const releases = await Promise.all([a!.acquire({ keyId: 'k1', maxSessions: null }), a!.acquire({ keyId: 'k2', maxSessions: null })]);
    for (const release of releases) release();
    await expect.poll(async () => (await redis.exists(`${prefix}{key:k1}:leases`)) + (await redis.zcard(`${prefix}{key:k2}:leases`)), { timeout: 2_000, interval: 20 }).toBe(0);
    // Every bucket key carries an expiry: at most the time to refill, plus a second.
    const ttl = await redis.pttl(`${prefix}{key:k1}:rate`);
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(1_100);
  });

  it('fails closed with 503 limits_unavailable while Redis is unreachable, and recovers when it returns', async () => {
    const target = new URL(TEST_REDIS_URL);
    const proxy = await startTcpProxy({ host: target.hostname, port: Number(target.port || 6379) });
    try {
      const { made: [a] } = await instances(1, { maxSessionsPerKey: 5, handshakesPerMinutePerIp: 100 }, `redis://127.0.0.1:${proxy.port}`);
      const release = await a!.acquire({ keyId: 'k', maxSessions: null });
      proxy.cut();
      const began = Date.now();
      const error = await refusal(a!.acquire({ keyId: 'k', maxSessions: null }));
      expect(error.code).toBe('limits_unavailable');
      expect(error.status).toBe(503);
      expect(error.retryAfterSeconds).toBeGreaterThan(0);
      expect((await refusal(a!.countHandshake('192.0.2.9'))).code).toBe('limits_unavailable');
      expect(Date.now() - began).toBeLessThan(5_000);
      release(); // must not throw while Redis is away
      proxy.restore();
      await expect.poll(() => a!.acquire({ keyId: 'k', maxSessions: null }).then(() => true, () => false), { timeout: 10_000, interval: 100 }).toBe(true);
    } finally {
      await proxy.close();
    }
  });

  it('refuses at once when Redis was not reachable at start, and admits once it is', async () => {
    const target = new URL(TEST_REDIS_URL);
    const proxy = await startTcpProxy({ host: target.hostname, port: Number(target.port || 6379) });
    proxy.cut();
    try {
      const prefix = uniquePrefix('down');
      const { limits, connected } = await RedisLimits.connect({ ...NO_LIMITS, maxSessionsPerKey: 1, url: `redis://127.0.0.1:${proxy.port}`, prefix, leaseTtlMs: 15_000 });
      opened.push(limits);
      expect(connected).toBe(false);
      expect((await refusal(limits.acquire({ keyId: 'k', maxSessions: null }))).code).toBe('limits_unavailable');
      // With nothing to limit, Redis is not consulted at all.
      const free = await RedisLimits.connect({ ...NO_LIMITS, url: `redis://127.0.0.1:${proxy.port}`, prefix, leaseTtlMs: 15_000 });
      opened.push(free.limits);
      await free.limits.countHandshake('192.0.2.1');
      (await free.limits.acquire({ keyId: 'k', maxSessions: null }))();
      proxy.restore();
      await expect.poll(() => limits.acquire({ keyId: 'k', maxSessions: null }).then(() => true, () => false), { timeout: 10_000, interval: 100 }).toBe(true);
    } finally {
      await proxy.close();
    }
  });
});
