import { Hono } from 'hono';
import type { Ledger } from '../../billing/ledger/index.js';
import { endedSessionView, parseEndedRequest, parseSpendRequest, spendView } from './operations.js';

/**
 * /admin/sessions/ended?key=&limit=&before=: settled and recovered sessions
 * from the ledger, newest end first. `before` is the previous page's last id,
 * a cursor rather than an offset, so sessions ending meanwhile shift no page.
 */
export function endedSessionRoutes(ledger: Ledger): Hono {
  const ended = new Hono();
  ended.get('/', async (c) => {
    const query = parseEndedRequest(c.req.query());
    const page = await ledger.endedSessions(query);
    const data = page.sessions.map(endedSessionView);
    return c.json({ object: 'list', data, has_more: page.hasMore, last_id: data.at(-1)?.id ?? null });
  });
  return ended;
}

/** /admin/spend?key=&bucket=hour|day&since=: charges summed per key per bucket, oldest bucket first. */
export function spendRoutes(ledger: Ledger): Hono {
  const spend = new Hono();
  spend.get('/', async (c) => {
    const { query, bucket } = parseSpendRequest(c.req.query());
    const rows = await ledger.spend(query);
    return c.json({ object: 'list', bucket, since: query.since.toISOString(), data: rows.map(spendView) });
  });
  return spend;
}
