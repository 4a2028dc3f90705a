import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { RelayError } from '../errors.js';
import { addressBucket } from './bucket.js';
import { sessionCap, tooManyConcurrent, tooManyHandshakes, tooManyNewSessions, type LimitRates, type OwnedLimits } from './limits.js';
import { ACQUIRE, COUNT_HANDSHAKE, RENEW } from './lua.js';

export interface RedisLimitsOptions extends LimitRates {
  url: string;
  /** Prefix of every key this relay writes, so that deployments (and tests) can share one Redis. */
  prefix: string;
  /** A lease not renewed for this long is free again: the most a killed instance's sessions hold their slots. */
  leaseTtlMs: number;
  /** Redis errors, for the log. Checks fail closed regardless. */
  onError?(error: Error): void;
}

type Scripts = {
  relayCountHandshake(key: string, perMinute: number): Promise<number>;
  relayAcquire(leases: string, bucket: string, cap: number, ttlMs: number, member: string, perMinute: number): Promise<[number, number]>;
  relayRenew(leases: string, ttlMs: number, ...members: string[]): Promise<number>;
};

/** How long a check waits for Redis before answering 503. */
const COMMAND_TIMEOUT_MS = 2_000;

/**
 * Limits shared by every instance through Redis. Buckets are Lua scripts;
 * concurrency is a set of leases per key, each with an expiry that the
 * owning instance pushes forward from one renewal timer (per process, not
 * per session). A killed instance stops renewing, so its sessions' slots
 * come free within `leaseTtlMs`.
 *
 * When Redis cannot answer, new sessions are refused with 503
 * `limits_unavailable` (fail closed): an outage must not lift every key's
 * cap across the fleet. Sessions already open are not touched.
 */
export class RedisLimits implements OwnedLimits {
  readonly kind = 'redis' as const;
  private readonly redis: Redis & Scripts;
  private readonly instance = randomUUID();
  private sequence = 0;
  /** Leases this process holds: leases key → members. */
  private readonly held = new Map<string, Set<string>>();
  private renewTimer: NodeJS.Timeout | undefined;
  private closed = false;

  private constructor(private readonly options: RedisLimitsOptions) {
    const redis = new Redis(options.url, {
      lazyConnect: true,
      // A check must not wait in a queue for a Redis that is gone: it fails at once, and the caller answers 503.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      commandTimeout: COMMAND_TIMEOUT_MS,
      connectTimeout: COMMAND_TIMEOUT_MS,
      retryStrategy: (attempt) => Math.min(attempt * 200, 2_000),
    });
    redis.on('error', (error: Error) => options.onError?.(error));
    redis.defineCommand('relayCountHandshake', { numberOfKeys: 1, lua: COUNT_HANDSHAKE });
    redis.defineCommand('relayAcquire', { numberOfKeys: 2, lua: ACQUIRE });
    redis.defineCommand('relayRenew', { numberOfKeys: 1, lua: RENEW });
    this.redis = redis as Redis & Scripts;
  }

  /**
   * Connects; a Redis that does not answer yet is not fatal: checks answer 503
   * until it does, and the client keeps reconnecting.
   */
  static async connect(options: RedisLimitsOptions): Promise<{ limits: RedisLimits; connected: boolean }> {
    const limits = new RedisLimits(options);
    const connected = await limits.redis.connect().then(
      () => true,
      (error: Error) => {
        options.onError?.(error);
        return false;
      },
    );
    return { limits, connected };
  }

  async countHandshake(ip: string): Promise<void> {
    const perMinute = this.options.handshakesPerMinutePerIp;
    if (perMinute === 0) return;
    const key = `${this.options.prefix}ip:${addressBucket(ip)}`;
    const wait = await this.redis.relayCountHandshake(key, perMinute).catch(unavailable);
    if (wait > 0) throw tooManyHandshakes(perMinute, wait);
  }

  async acquire(request: { keyId: string; maxSessions: number | null }): Promise<() => void> {
    const cap = sessionCap(request.maxSessions, this.options);
    const perMinute = this.options.sessionsPerMinute;
    if (cap === 0 && perMinute === 0) return () => undefined;
    // The hash tag keeps a key's two entries in one Redis Cluster slot, as one script needs.
    const tag = `${this.options.prefix}{key:${request.keyId}}`;
    const leases = `${tag}:leases`;
    const member = `${this.instance}:${++this.sequence}`;
    const [verdict, wait] = await this.redis.relayAcquire(leases, `${tag}:rate`, cap, this.options.leaseTtlMs, member, perMinute).catch(unavailable);
    if (verdict === 1) throw tooManyConcurrent(cap);
    if (verdict === 2) throw tooManyNewSessions(perMinute, wait);
    if (cap === 0) return () => undefined;
    this.hold(leases, member);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.drop(leases, member);
      // If this fails the lease simply expires: it is no longer renewed.
      if (!this.closed) void this.redis.zrem(leases, member).catch(() => undefined);
    };
  }

  /** Leases this process holds (for tests and metrics). */
  get heldLeases(): number {
    let count = 0;
    for (const members of this.held.values()) count += members.size;
    return count;
  }

  /** Pushes every held lease's expiry forward now (the timer does this every third of the ttl). */
  async renew(): Promise<void> {
    const pipeline = this.redis.pipeline() as ReturnType<Redis['pipeline']> & { relayRenew(leases: string, ttlMs: number, ...members: string[]): unknown };
    for (const [leases, members] of this.held) pipeline.relayRenew(leases, this.options.leaseTtlMs, ...members);
    // A failed renewal is retried on the next tick; the leases outlive a few misses.
    await pipeline.exec().catch((error: Error) => this.options.onError?.(error));
  }

  /** Stops renewing and releases this process's leases; the connection is closed. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.stopRenewing();
    const pipeline = this.redis.pipeline();
    for (const [leases, members] of this.held) pipeline.zrem(leases, ...members);
    this.held.clear();
    await pipeline.exec().catch(() => undefined);
    await this.redis.quit().catch(() => this.redis.disconnect());
  }

  private hold(leases: string, member: string): void {
    let members = this.held.get(leases);
    if (!members) this.held.set(leases, (members = new Set()));
    members.add(member);
    if (this.renewTimer === undefined) {
      this.renewTimer = setInterval(() => void this.renew(), Math.max(100, Math.floor(this.options.leaseTtlMs / 3)));
      this.renewTimer.unref();
    }
  }

  private drop(leases: string, member: string): void {
    const members = this.held.get(leases);
    if (!members) return;
    members.delete(member);
    if (members.size === 0) this.held.delete(leases);
    if (this.held.size === 0) this.stopRenewing();
  }

  private stopRenewing(): void {
    if (this.renewTimer !== undefined) clearInterval(this.renewTimer);
    this.renewTimer = undefined;
  }
}

function unavailable(error: unknown): never {
  throw new RelayError('limits_unavailable', undefined, { cause: error, retryAfterSeconds: 5 });
}
