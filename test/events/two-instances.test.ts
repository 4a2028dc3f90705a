import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { createScratchSchema, POSTGRES_REQUIRED, probePostgres, type ScratchSchema } from '../helpers/postgres.js';
import { startTestRelay, type LedgerTestRelay } from '../helpers/relay.js';
import { eventually } from '../helpers/wait.js';

/*
 * Two relays on one PostgreSQL ledger each run a deliverer over the same
 * outbox: every event reaches the receiver, and none twice.
 */

const SECRET = `whsec_${randomBytes(24).toString('base64')}`;

const stacks: LedgerTestRelay[] = [];
let schema: ScratchSchema | undefined;
let server: Server | undefined;
afterEach(async () => {
  for (const stack of stacks.splice(0)) await stack.close();
  await schema?.drop();
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  schema = undefined;
  server = undefined;
});

const postgresProblem = await probePostgres();
const available = postgresProblem === null || POSTGRES_REQUIRED;
if (!available) console.warn(`Skipping usage events across two instances: ${postgresProblem}.`);

describe('usage events from two relays on one PostgreSQL ledger', () => {
  it.runIf(available)('sends each event once, whichever relay claims it', async () => {
    const received: string[] = [];
    server = createServer((req, res) => {
      req.resume().on('end', () => {
        received.push(String(req.headers['webhook-id']));
        // A slow receiver keeps both deliverers' rounds overlapping.
        setTimeout(() => res.writeHead(204).end(), 5);
      });
    });
    await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/usage`;
    schema = await createScratchSchema();
    for (let i = 0; i < 2; i += 1) {
      stacks.push(await startTestRelay({ settings: { logLevel: 'silent', usageWebhookUrl: url, usageWebhookSecret: SECRET, usageWebhookPollMs: 10 }, postgres: schema }));
    }

    const [a, b] = stacks as [LedgerTestRelay, LedgerTestRelay];
    const { record } = await a.createKey();
    const sessions = await Promise.all(
      [a, b].map(async (stack, n) => {
        const id = `sess_${randomBytes(16).toString('hex')}`;
        await stack.ledger.openSession({ id, keyId: record.id, model: 'gpt-realtime', upstream: 'simulator', instanceId: `instance-${n}`, startedAt: new Date() });
        for (let i = 0; i < 30; i += 1) {
          await stack.ledger.recordCharge({ sessionId: id, keyId: record.id, kind: 'response', itemId: `resp_${i}`, model: 'gpt-realtime', costNano: 1_000n, usage: {} });
        }
        await stack.ledger.settleSession({ sessionId: id, endedAt: new Date(), endReason: 'client_closed', status: 'settled', summary: {} });
        return id;
      }),
    );

    // Every event recorded as delivered: nothing is left for either relay to send.
    let delivered = 0;
    await eventually('62 events recorded as delivered', () => {
      void a.ledger.usageEventBacklog().then((backlog) => (delivered = backlog.delivered));
      return delivered === 62;
    }, 15_000);
    expect(received).toHaveLength(62);
    expect(new Set(received).size).toBe(62);
    for (const id of sessions) expect(received).toContain(`stl_${id}`);
  });
});
