import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { CLIENT_SECRET_PREFIX } from '../../protocol/client-secret.js';

const KEY_PREFIX = 'rk_';

/** A new plaintext key: 'rk_' + 32 random bytes, base64url. */
export function generateKey(): string {
  return KEY_PREFIX + randomBytes(32).toString('base64url');
}

/** A new ephemeral client secret: 'ek_' + 32 random bytes, base64url. Hashed like a key. */
export function generateClientSecret(): string {
  return CLIENT_SECRET_PREFIX + randomBytes(32).toString('base64url');
}

/** The only form of a key the database holds. */
export function hashKey(plaintextKey: string): string {
  return createHash('sha256').update(plaintextKey, 'utf8').digest('hex');
}

/**
 * Re-checks a row found by hash lookup. The lookup is an index probe whose
 * timing depends on the hash, not on the key; this compare keeps the final
 * check constant-time as well.
 */
export function hashMatches(storedHash: string, computedHash: string): boolean {
  const stored = Buffer.from(storedHash, 'utf8');
  const computed = Buffer.from(computedHash, 'utf8');
  return stored.length === computed.length && timingSafeEqual(stored, computed);
}
