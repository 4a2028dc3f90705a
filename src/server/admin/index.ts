import { randomBytes } from 'node:crypto';
import { Hono } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { createMiddleware } from 'hono/factory';
import type { Ledger } from '../../billing/ledger/index.js';
import { describeMachine } from '../../machines/diagram.js';
import { sessionMachine } from '../../machines/session.js';
import type { SessionRegistry } from '../registry.js';
import { adminAuth } from './auth.js';
import { AdminError, toAdminError } from './errors.js';
import { endedSessionRoutes, spendRoutes } from './history.js';
import { keyRoutes } from './keys.js';
import { livePage } from './page.js';
import { phoneRouteRoutes } from './routes.js';
import { sessionRoutes } from './sessions.js';
import { usageEventRoutes } from './usage-events.js';
import { usageRoutes } from './usage.js';

export { ADMIN_ERRORS, AdminError, type AdminErrorCode } from './errors.js';
export type { SessionView } from './session-view.js';

export interface AdminOptions {
  /** ADMIN_TOKEN: every endpoint but the page itself wants it as a bearer token. */
  token: string;
  ledger: Ledger;
  registry: SessionRegistry;
  /** How often the live stream refreshes counters between lifecycle changes; default 1 s. */
  streamRefreshMs?: number;
}

const MAX_BODY_BYTES = 64 * 1024;

const noStore = createMiddleware(async function noStore(c, next) {
  await next();
  c.header('Cache-Control', 'no-store');
});

/**
 * The admin API and the live sessions page, to be mounted at /admin:
 * keys, phone call routes, usage, spend, ended sessions, live sessions (list, one, cancel, SSE
 * stream) and /ui.
 */
export function adminApp(options: AdminOptions): Hono {
  const admin = new Hono();
  admin.onError((error, c) => {
    const adminError = toAdminError(error);
    if (adminError.status === 401) c.header('WWW-Authenticate', 'Bearer realm="realtime-relay admin"');
    return c.json(adminError.toBody(), adminError.status as 400);
  });
  admin.use('*', noStore);

  // The page is a shell without data; it is registered ahead of the token check
  // because a browser cannot send a bearer header when it navigates to it.
  const machine = describeMachine(sessionMachine);
  admin.get('/ui', (c) => {
    const nonce = randomBytes(16).toString('base64');
    c.header('Content-Security-Policy', `default-src 'none'; script-src 'nonce-${nonce}'; style-src 'nonce-${nonce}'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'`);
    c.header('Referrer-Policy', 'no-referrer');
    c.header('X-Content-Type-Options', 'nosniff');
    return c.html(livePage(machine, nonce));
  });

  admin.use('*', adminAuth(options.token));
  admin.use(
    '*',
    bodyLimit({
      maxSize: MAX_BODY_BYTES,
      onError: () => {
        throw new AdminError('request_too_large', `A request body may have at most ${MAX_BODY_BYTES} bytes.`);
      },
    }),
  );
  admin.route('/keys', keyRoutes(options.ledger));
  admin.route('/usage', usageRoutes(options.ledger));
  admin.route('/routes', phoneRouteRoutes(options.ledger));
  admin.route('/usage-events', usageEventRoutes(options.ledger));
  admin.route('/spend', spendRoutes(options.ledger));
  // Ahead of /sessions, whose /:id would take "ended" for a malformed session id.
  admin.route('/sessions/ended', endedSessionRoutes(options.ledger));
  admin.route('/sessions', sessionRoutes(options.registry, options.streamRefreshMs));
  admin.all('*', () => {
    throw new AdminError('not_found');
  });
  return admin;
}
