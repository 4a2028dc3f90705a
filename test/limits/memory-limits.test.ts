import { describe, expect, it } from 'vitest';
import { RelayError } from '../../src/errors.js';
import { addressBucket } from '../../src/limits/bucket.js';
import { MemoryLimits } from '../../src/limits/index.js';
import { NO_LIMITS, refusal } from './refusal.js';

function clock(start = 1_000_000) {
  let now = start;
  return { now: () => now, advance: (ms: number) => void (now += ms) };
}

describe('limits of one instance', () => {
  it('lets a key hold its cap of sessions and refuses one more with 429 until one ends', async () => {
    const limits = new MemoryLimits({ ...NO_LIMITS, maxSessionsPerKey: 2 });
    const first = await limits.acquire({ keyId: 'k', maxSessions: null });
    await limits.acquire({ keyId: 'k', maxSessions: null });
    const error = await refusal(limits.acquire({ keyId: 'k', maxSessions: null }));
    expect(error.code).toBe('rate_limit_exceeded');
    expect(error.status).toBe(429);
    expect(error.retryAfterSeconds).toBeGreaterThanOrEqual(1);
    // Another key is not affected.
    await limits.acquire({ keyId: 'other', maxSessions: null });
    first();
    first(); // a second release of the same slot frees nothing more
    await limits.acquire({ keyId: 'k', maxSessions: null });
    await refusal(limits.acquire({ keyId: 'k', maxSessions: null }));
    expect(limits.stats().openSessions).toBe(3);
  });

  it("uses the key's own cap over the relay's default, and 0 means unlimited", async () => {
    const limits = new MemoryLimits({ ...NO_LIMITS, maxSessionsPerKey: 5 });
    await limits.acquire({ keyId: 'k', maxSessions: 1 });
    await refusal(limits.acquire({ keyId: 'k', maxSessions: 1 }));
    const unlimited = new MemoryLimits(NO_LIMITS);
    for (let i = 0; i < 1000; i++) await unlimited.acquire({ keyId: 'k', maxSessions: null });
    expect(unlimited.stats().openSessions).toBe(1000);
  });

  it('forgets a key once its last session is released', async () => {
    const limits = new MemoryLimits({ ...NO_LIMITS, maxSessionsPerKey: 3 });
    const releases = await Promise.all(Array.from({ length: 50 }, (_, i) => limits.acquire({ keyId: `k${i}`, maxSessions: null })));
    expect(limits.stats().keysWithSessions).toBe(50);
    for (const release of releases) release();
    expect(limits.stats()).toMatchObject({ openSessions: 0, keysWithSessions: 0 });
  });

  it('refills new sessions per minute as a token bucket and says when to retry', async () => {
    const time = clock();
    const limits = new MemoryLimits({ ...NO_LIMITS, sessionsPerMinute: 6 }, time.now);
    for (let i = 0; i < 6; i++) (await limits.acquire({ keyId: 'k', maxSessions: null }))();
    const error = await refusal(limits.acquire({ keyId: 'k', maxSessions: null }));
    // One token every 10 s.
    expect(error.retryAfterSeconds).toBe(10);
    time.advance(9_000);
    expect((await refusal(limits.acquire({ keyId: 'k', maxSessions: null }))).retryAfterSeconds).toBe(1);
    time.advance(1_000);
    await limits.acquire({ keyId: 'k', maxSessions: null });
    await refusal(limits.acquire({ keyId: 'k', maxSessions: null }));
    // A quiet minute refills it to the burst, not beyond.
    time.advance(10 * 60_000);
    for (let i = 0; i < 6; i++) await limits.acquire({ keyId: 'k', maxSessions: null });
    await refusal(limits.acquire({ keyId: 'k', maxSessions: null }));
  });

  it('does not spend a session token on a session refused for concurrency', async () => {
    const time = clock();
    const limits = new MemoryLimits({ ...NO_LIMITS, maxSessionsPerKey: 1, sessionsPerMinute: 2 }, time.now);
    const release = await limits.acquire({ keyId: 'k', maxSessions: null });
    for (let i = 0; i < 5; i++) await refusal(limits.acquire({ keyId: 'k', maxSessions: null }));
    release();
    (await limits.acquire({ keyId: 'k', maxSessions: null }))();
  });

  it('counts handshakes per client address, IPv6 by its /64', async () => {
    const time = clock();
    const limits = new MemoryLimits({ ...NO_LIMITS, handshakesPerMinutePerIp: 3 }, time.now);
    for (let i = 0; i < 3; i++) await limits.countHandshake('203.0.113.7');
    const error = await refusal(limits.countHandshake('::ffff:203.0.113.7'));
    expect(error.retryAfterSeconds).toBe(20);
    await limits.countHandshake('203.0.113.8');
    for (let i = 0; i < 3; i++) await limits.countHandshake(`2001:db8:1:2::${i + 1}`);
    await refusal(limits.countHandshake('2001:db8:1:2:ffff::9'));
    await limits.countHandshake('2001:db8:1:3::1');
    time.advance(20_000);
    await limits.countHandshake('203.0.113.7');
  });

  it('sweeps the buckets of callers that went quiet, so the maps stay bounded', async () => {
    const time = clock();
    const limits = new MemoryLimits({ ...NO_LIMITS, sessionsPerMinute: 10, handshakesPerMinutePerIp: 10 }, time.now);
    for (let i = 0; i < 2000; i++) {
      await limits.countHandshake(`198.51.${i >> 8}.${i & 255}`);
      (await limits.acquire({ keyId: `k${i}`, maxSessions: null }))();
    }
    expect(limits.stats().buckets).toBe(4000);
    time.advance(61_000);
    await limits.countHandshake('192.0.2.1');
    expect(limits.stats().buckets).toBe(1);
  });

  it('groups IPv6 addresses by /64 and maps IPv4 in IPv6 to IPv4', () => {
    expect(addressBucket('::ffff:10.1.2.3')).toBe('10.1.2.3');
    expect(addressBucket('10.1.2.3')).toBe('10.1.2.3');
    expect(addressBucket('2001:db8:0:0:1::1')).toBe('2001:db8:0:0::/64');
    expect(addressBucket('2001:db8::1')).toBe('2001:db8:0:0::/64');
    expect(addressBucket('::1')).toBe('0:0:0:0::/64');
  });
});
