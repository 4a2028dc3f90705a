import { Hono } from 'hono';
import type { Ledger } from '../../billing/ledger/index.js';
import { parseUsageRequest, usageCsv, usageJson } from './operations.js';

/** /admin/usage?key=&since=&format=json|csv: every charge, oldest first. */
export function usageRoutes(ledger: Ledger): Hono {
  const usage = new Hono();
  usage.get('/', async (c) => {
    const { query, format } = parseUsageRequest({ key: c.req.query('key'), since: c.req.query('since'), format: c.req.query('format') });
    const rows = await ledger.usage(query);
    if (format === 'csv') return c.body(usageCsv(rows), 200, { 'content-type': 'text/csv; charset=utf-8' });
    return c.json({ object: 'list', data: usageJson(rows) });
  });
  return usage;
}
