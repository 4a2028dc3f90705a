import { createHash, timingSafeEqual } from 'node:crypto';
import { createMiddleware } from 'hono/factory';
import { isClientSecret } from '../../protocol/client-secret.js';
import { AdminError } from './errors.js';

function digest(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}

/**
 * Admits requests that carry `Authorization: Bearer <token>`. Both sides are
 * hashed first, so the comparison is constant-time and of equal lengths:
 * neither the token's content nor its length shows in the timing.
 */
export function adminAuth(token: string) {
  const expected = digest(token);
  return createMiddleware(async function adminAuthMiddleware(c, next) {
    const header = c.req.header('authorization');
    const match = header === undefined ? null : /^Bearer\s+(\S+)\s*$/i.exec(header);
    if (!match) throw new AdminError('missing_admin_token');
    if (!timingSafeEqual(digest(match[1]!), expected)) {
      // Said plainly: a client secret is never an admin credential.
      if (isClientSecret(match[1])) throw new AdminError('client_secret_not_allowed', 'A client secret cannot use the admin API: it needs "Authorization: Bearer <ADMIN_TOKEN>".');
      throw new AdminError('invalid_admin_token');
    }
    await next();
  });
}
