import { addressBucket, isFull, takeToken, type BucketState } from './bucket.js';
import { sessionCap, tooManyConcurrent, tooManyHandshakes, tooManyNewSessions, type LimitRates, type OwnedLimits } from './limits.js';

/** Full buckets are forgotten this often; the maps hold at most a minute of callers. */
const SWEEP_EVERY_MS = 60_000;

/**
 * Limits of one instance, in memory. Nothing here owns a timer: idle
 * buckets are swept on the next call after a sweep is due, and a released
 * key's counter is deleted at zero, so the maps stay bounded by the callers
 * of the last minute and the keys with sessions open.
 */
export class MemoryLimits implements OwnedLimits {
  readonly kind = 'memory' as const;
  private readonly open = new Map<string, number>();
  private readonly keyBuckets = new Map<string, BucketState>();
  private readonly ipBuckets = new Map<string, BucketState>();
  private lastSweep: number;

  constructor(
    private readonly rates: LimitRates,
    private readonly now: () => number = Date.now,
  ) {
    this.lastSweep = now();
  }

  async countHandshake(ip: string): Promise<void> {
    const perMinute = this.rates.handshakesPerMinutePerIp;
    if (perMinute === 0) return;
    const now = this.sweep();
    const bucket = addressBucket(ip);
    const take = takeToken(this.ipBuckets.get(bucket), perMinute, now);
    if (!take.taken) throw tooManyHandshakes(perMinute, take.retryAfterMs);
    this.ipBuckets.set(bucket, take.state);
  }

  async acquire(request: { keyId: string; maxSessions: number | null }): Promise<() => void> {
    const { keyId } = request;
    const cap = sessionCap(request.maxSessions, this.rates);
    const perMinute = this.rates.sessionsPerMinute;
    const open = this.open.get(keyId) ?? 0;
    // Checked before a token is taken: a session refused for concurrency costs no rate.
    if (cap > 0 && open >= cap) throw tooManyConcurrent(cap);
    if (perMinute > 0) {
      const now = this.sweep();
      const take = takeToken(this.keyBuckets.get(keyId), perMinute, now);
      if (!take.taken) throw tooManyNewSessions(perMinute, take.retryAfterMs);
      this.keyBuckets.set(keyId, take.state);
    }
    this.open.set(keyId, open + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (this.open.get(keyId) ?? 1) - 1;
      if (left <= 0) this.open.delete(keyId);
      else this.open.set(keyId, left);
    };
  }

  /** Sessions holding a slot, and buckets remembered (for tests and metrics). */
  stats(): { openSessions: number; keysWithSessions: number; buckets: number } {
    let openSessions = 0;
    for (const count of this.open.values()) openSessions += count;
    return { openSessions, keysWithSessions: this.open.size, buckets: this.keyBuckets.size + this.ipBuckets.size };
  }

  async close(): Promise<void> {
    this.keyBuckets.clear();
    this.ipBuckets.clear();
  }

  private sweep(): number {
    const now = this.now();
    if (now - this.lastSweep < SWEEP_EVERY_MS) return now;
    this.lastSweep = now;
    for (const [key, state] of this.keyBuckets) if (isFull(state, this.rates.sessionsPerMinute, now)) this.keyBuckets.delete(key);
    for (const [ip, state] of this.ipBuckets) if (isFull(state, this.rates.handshakesPerMinutePerIp, now)) this.ipBuckets.delete(ip);
    return now;
  }
}
