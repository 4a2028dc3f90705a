import type { LimitRates, OwnedLimits } from './limits.js';
import { MemoryLimits } from './memory.js';
import { RedisLimits } from './redis.js';

export type { Limits, LimitRates, OwnedLimits } from './limits.js';
export { MemoryLimits } from './memory.js';
export { RedisLimits } from './redis.js';

export interface LimitsSettings extends LimitRates {
  redisUrl: string | undefined;
  redisPrefix: string;
  leaseTtlMs: number;
}

/** Limits shared through Redis when a URL is set, else this instance's own. */
export async function createLimits(settings: LimitsSettings, onRedisError: (error: Error) => void = () => undefined): Promise<{ limits: OwnedLimits; connected: boolean }> {
  const rates: LimitRates = {
    maxSessionsPerKey: settings.maxSessionsPerKey,
    sessionsPerMinute: settings.sessionsPerMinute,
    handshakesPerMinutePerIp: settings.handshakesPerMinutePerIp,
  };
  if (!settings.redisUrl) return { limits: new MemoryLimits(rates), connected: true };
  return RedisLimits.connect({ ...rates, url: settings.redisUrl, prefix: settings.redisPrefix, leaseTtlMs: settings.leaseTtlMs, onError: onRedisError });
}
