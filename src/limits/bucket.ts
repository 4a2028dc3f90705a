/**
 * A token bucket holding up to `perMinute` tokens, refilled continuously at
 * `perMinute` per minute. The same arithmetic runs in Redis (lua.ts), so one
 * instance and many behave alike.
 */
export interface BucketState {
  tokens: number;
  /** When `tokens` was measured, in ms. */
  at: number;
}

export type Take = { taken: true; state: BucketState } | { taken: false; retryAfterMs: number };

export function takeToken(state: BucketState | undefined, perMinute: number, now: number): Take {
  const rate = perMinute / 60_000;
  const tokens = state === undefined ? perMinute : Math.min(perMinute, state.tokens + Math.max(0, now - state.at) * rate);
  if (tokens < 1) return { taken: false, retryAfterMs: Math.ceil((1 - tokens) / rate) };
  return { taken: true, state: { tokens: tokens - 1, at: now } };
}

/** A bucket that has refilled completely is the same as no bucket: it can be forgotten. */
export function isFull(state: BucketState, perMinute: number, now: number): boolean {
  return state.tokens + Math.max(0, now - state.at) * (perMinute / 60_000) >= perMinute;
}

/** Whole seconds for `Retry-After`, never 0. */
export function retryAfterSeconds(ms: number): number {
  return Math.max(1, Math.ceil(ms / 1000));
}

/**
 * The address a handshake limit counts. IPv4-mapped IPv6 is the IPv4
 * address; other IPv6 addresses count by their /64, the block one client
 * is usually given, so a client cannot dodge the limit by rotating addresses
 * inside its own network.
 */
export function addressBucket(ip: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  if (mapped) return mapped[1]!;
  if (!ip.includes(':')) return ip;
  const [head = '', tail = ''] = ip.toLowerCase().split('::');
  const left = head === '' ? [] : head.split(':');
  const right = tail === '' ? [] : tail.split(':');
  const groups = ip.includes('::') ? [...left, ...Array<string>(Math.max(0, 8 - left.length - right.length)).fill('0'), ...right] : left;
  return `${groups
    .slice(0, 4)
    .map((g) => g.replace(/^0+(?=.)/, ''))
    .join(':')}::/64`;
}
