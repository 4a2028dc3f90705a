import { Hono } from 'hono';
import type { Ledger } from '../../billing/ledger/index.js';

/**
 * /admin/usage-events: the outbox of usage events at a glance. A growing
 * `pending` with `failing` above zero means the receiver is refusing or
 * unreachable; `last_error` says how.
 */
export function usageEventRoutes(ledger: Ledger): Hono {
  const events = new Hono();
  events.get('/', async (c) => {
    const backlog = await ledger.usageEventBacklog();
    return c.json({
      object: 'usage_event_backlog',
      pending: backlog.pending,
      delivered: backlog.delivered,
      failing: backlog.failing,
      oldest_pending_at: backlog.oldestPendingAt?.toISOString() ?? null,
      last_error: backlog.lastError,
    });
  });
  return events;
}
