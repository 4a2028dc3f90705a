import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { Ledger } from '../../src/billing/ledger/index.js';
import { createScratchSchema, POSTGRES_REQUIRED, probePostgres, type ScratchSchema } from '../helpers/postgres.js';
import { startTestRelay, type LedgerTestRelay } from '../helpers/relay.js';

/*
 * The outbox backlog over the admin API, on the relay as `relay start`
 * builds it, once on SQLite and once on PostgreSQL.
 */

const TOKEN = 'admin-token-for-usage-event-tests';
const SECRET = `whsec_${randomBytes(24).toString('base64')}`;

let stack: LedgerTestRelay | undefined;
let schema: ScratchSchema | undefined;
let server: Server | undefined;
afterEach(async () => {
  await stack?.close();
  await schema?.drop();
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  stack = undefined;
  schema = undefined;
  server = undefined;
});

/** A receiver that answers `status.code` to every request. */
async function receiver(status: { code: number }): Promise<string> {
  server = createServer((req, res) => req.resume().on('end', () => res.writeHead(status.code).end()));
  await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}/usage`;
}

async function backlog(): Promise<{ status: number; body: any }> {
  const response = await fetch(`${stack!.httpUrl}/admin/usage-events`, { headers: { Authorization: `Bearer ${TOKEN}` } });
  return { status: response.status, body: await response.json() };
}

/** The backlog once `done` holds of it, or as it is after 5 s. */
async function backlogWhen(done: (body: any) => boolean): Promise<{ status: number; body: any }> {
  let answer = await backlog();
  for (const deadline = Date.now() + 5_000; !done(answer.body) && Date.now() < deadline; answer = await backlog()) {
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return answer;
}

/** A session with two charges, settled: three events. */
async function billSession(ledger: Ledger): Promise<void> {
  const { record } = await stack!.createKey();
  const id = `sess_${randomBytes(16).toString('hex')}`;
  await ledger.openSession({ id, keyId: record.id, model: 'gpt-realtime', upstream: 'simulator', instanceId: 'usage-events-test', startedAt: new Date() });
  for (const itemId of ['resp_1', 'resp_2']) {
    await ledger.recordCharge({ sessionId: id, keyId: record.id, kind: 'response', itemId, model: 'gpt-realtime', costNano: 1_000n, usage: {} });
  }
  await ledger.settleSession({ sessionId: id, endedAt: new Date(), endReason: 'client_closed', status: 'settled', summary: {} });
}

const postgresProblem = await probePostgres();
if (postgresProblem !== null && !POSTGRES_REQUIRED) console.warn(`Skipping the PostgreSQL half of the usage events API tests: ${postgresProblem}.`);

const backends = [
  { name: 'SQLite', available: true },
  { name: 'PostgreSQL', available: postgresProblem === null || POSTGRES_REQUIRED },
] as const;

describe.each(backends)('usage event backlog over the admin API ($name)', ({ name, available }) => {
  async function start(webhookUrl?: string): Promise<LedgerTestRelay> {
    if (name === 'PostgreSQL') schema = await createScratchSchema();
    const webhook = webhookUrl ? { usageWebhookUrl: webhookUrl, usageWebhookSecret: SECRET, usageWebhookPollMs: 20, usageWebhookRetryMs: 20, usageWebhookMaxRetryMs: 100 } : {};
    stack = await startTestRelay({ settings: { adminToken: TOKEN, logLevel: 'silent', ...webhook }, ...(schema ? { postgres: schema } : {}) });
    return stack;
  }

  it.runIf(available)('shows events piling up while the receiver fails, and draining once it answers', async () => {
    const status = { code: 503 };
    const { ledger } = await start(await receiver(status));
    await billSession(ledger);

    let answer = await backlogWhen((body) => body.failing === 3);
    expect(answer.status).toBe(200);
    expect(answer.body).toMatchObject({ object: 'usage_event_backlog', pending: 3, delivered: 0, failing: 3, last_error: 'the receiver answered 503' });
    expect(Date.parse(answer.body.oldest_pending_at)).toBeGreaterThan(Date.now() - 60_000);

    status.code = 200;
    answer = await backlogWhen((body) => body.delivered === 3);
    expect(answer.body).toEqual({ object: 'usage_event_backlog', pending: 0, delivered: 3, failing: 0, oldest_pending_at: null, last_error: null });
  });

  it.runIf(available)('writes no events without a webhook URL', async () => {
    const { ledger } = await start();
    await billSession(ledger);
    expect((await backlog()).body).toMatchObject({ pending: 0, delivered: 0, failing: 0 });
  });

  it.runIf(available)('wants the admin token', async () => {
    await start();
    expect((await fetch(`${stack!.httpUrl}/admin/usage-events`)).status).toBe(401);
  });
});
