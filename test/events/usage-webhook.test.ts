/**
 * Usage events end to end: a relay process bills sessions while the
 * receiver is answering 503, is killed, restarts on the same data folder
 * while the receiver refuses connections, and the receiver then comes up.
 * Every charge and settlement arrives, signed (the receiver verifies each
 * with `standardwebhooks`), none is lost, and a repeat carries the id it
 * had the first time.
 */
import { randomBytes } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { Webhook } from 'standardwebhooks';
import { afterEach, describe, expect, it } from 'vitest';
import { openLedger } from '../../src/billing/ledger/index.js';
import { startSimulator } from '../../src/simulator/index.js';
import { respond } from '../billing/session-bill.js';
import { usage } from '../billing/invoice.js';
import { TestClient } from '../helpers/client.js';
import { readSqlite } from '../helpers/ledger.js';
import { spawnRelay, tempDataDir, type RelayProcess } from '../helpers/relay-process.js';
import { eventually } from '../helpers/wait.js';

const SECRET = `whsec_${randomBytes(24).toString('base64')}`;
const ADMIN_TOKEN = 'admin-token-for-usage-events';

interface Received {
  webhookId: string;
  body: string;
  headers: IncomingHttpHeaders;
  event: { id: string; type: string; specversion: string; source: string; data: Record<string, unknown> };
}

/** A webhook receiver on 127.0.0.1 that verifies each signature and keeps what it accepted. */
class Receiver {
  readonly accepted: Received[] = [];
  refusedSignatures = 0;
  answered503 = 0;
  up = false;
  private server: Server | null = null;
  private readonly verifier = new Webhook(SECRET);

  constructor(public port = 0) {}

  get url(): string {
    return `http://127.0.0.1:${this.port}/usage`;
  }

  async listen(): Promise<void> {
    const server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8');
        if (!this.up) {
          this.answered503 += 1;
          res.writeHead(503).end();
          return;
        }
        try {
          const event = this.verifier.verify(body, req.headers as Record<string, string>) as Received['event'];
          this.accepted.push({ webhookId: String(req.headers['webhook-id']), body, headers: req.headers, event });
          res.writeHead(204).end();
        } catch {
          this.refusedSignatures += 1;
          res.writeHead(400).end();
        }
      });
    });
    await new Promise<void>((resolve) => server.listen(this.port, '127.0.0.1', resolve));
    this.port = (server.address() as AddressInfo).port;
    this.server = server;
  }

  /** Stops listening: connections are refused until listen() again. */
  async close(): Promise<void> {
    const server = this.server;
    this.server = null;
    if (!server) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function outboxIds(dataDir: string): string[] {
  return readSqlite(join(dataDir, 'ledger.db'), (db) => db.prepare('SELECT event_id FROM usage_events ORDER BY id').pluck().all() as string[]);
}

describe('usage events', () => {
  it('delivers every charge and settlement once the receiver is back, across a crash and a restart, each with one stable id', { timeout: 60_000 }, async () => {
    const sim = await startSimulator({ chunkIntervalMs: 0 });
    cleanups.push(() => sim.close());
    const receiver = new Receiver();
    await receiver.listen();
    cleanups.push(() => receiver.close());
    const data = tempDataDir('relay-usage-events-');
    cleanups.push(() => data.remove());
    const env = {
      OPENAI_API_KEY: 'x',
      OPENAI_BASE_URL: `http://127.0.0.1:${sim.port}/v1`,
      RELAY_DEMO_BALANCE_USD: '0',
      ADMIN_TOKEN,
      RELAY_USAGE_WEBHOOK_URL: receiver.url,
      RELAY_USAGE_WEBHOOK_SECRET: SECRET,
      RELAY_USAGE_WEBHOOK_POLL_MS: '50',
      RELAY_USAGE_WEBHOOK_RETRY_MS: '50',
      RELAY_USAGE_WEBHOOK_MAX_RETRY_MS: '400',
      RELAY_USAGE_WEBHOOK_TIMEOUT_MS: '1000',
    };
    const clients: TestClient[] = [];
    cleanups.push(() => clients.forEach((c) => c.socket.terminate()));

    let relay: RelayProcess = await spawnRelay({ dataDir: data.path, env });
    cleanups.push(() => relay.kill());
    const ledger = await openLedger({ sqlitePath: join(data.path, 'ledger.db') });
    const { key, record } = await ledger.createKey({ name: 'events', balanceNano: 10_000_000_000n });
    await ledger.close();
    const connect = () => {
      const client = TestClient.connect(relay.realtimeUrl(), { key });
      clients.push(client);
      return client;
    };

    // Receiver down (503): one session ends with two charges, another stays open with one.
    const ended = connect();
    const open = connect();
    await Promise.all([ended, open].map((client) => client.next('session.created')));
    const responseIds = [
      (await respond(ended, usage({ text: [300, 100], out: [40, 0] }))).response.id,
      (await respond(ended, usage({ text: [50, 0], out: [10, 0] }))).response.id,
      (await respond(open, usage({ text: [20, 0], out: [5, 0] }))).response.id,
    ];
    ended.socket.close();
    await ended.closedWith();
    await eventually('three charges and a settlement in the outbox', () => outboxIds(data.path).length === 4, 10_000);
    await eventually('a refused delivery', () => receiver.answered503 > 0, 10_000);

    // The relay dies; while it is down, so is the receiver (connections refused).
    await relay.kill();
    await open.closedWith();
    await receiver.close();
    relay = await spawnRelay({ dataDir: data.path, env });
    // Its start settles the session the dead process left open: one more event.
    await eventually('the recovered settlement in the outbox', () => outboxIds(data.path).length === 5, 10_000);
    await relay.waitForLog((line) => line.msg?.startsWith('usage event delivery failed') === true, 'a failed delivery to a refusing receiver', 10_000);
    expect(receiver.accepted).toEqual([]);

    receiver.up = true;
    await receiver.listen();
    const expected = outboxIds(data.path);
    await eventually('every event at the receiver', () => expected.every((id) => receiver.accepted.some((r) => r.webhookId === id)), 15_000);

    // Nothing lost, nothing unknown; a repeat (if any) is the same event under the same id.
    expect(new Set(receiver.accepted.map((r) => r.webhookId))).toEqual(new Set(expected));
    for (const r of receiver.accepted) {
      expect(r.event.id).toBe(r.webhookId);
      expect(r.event).toMatchObject({ specversion: '1.0', source: 'realtime-relay', datacontenttype: 'application/json' });
      expect(r.headers['content-type']).toMatch(/^application\/cloudevents\+json/);
    }
    const firstOf = new Map<string, Received>();
    for (const r of receiver.accepted) {
      const first = firstOf.get(r.webhookId);
      if (first) expect(r.event).toEqual(first.event);
      else firstOf.set(r.webhookId, r);
    }
    const events = [...firstOf.values()].map((r) => r.event);
    const charged = events.filter((e) => e.type === 'relay.usage.charged');
    const settled = events.filter((e) => e.type === 'relay.session.settled');
    expect(charged.map((e) => (e.data.item as { id: string }).id).sort()).toEqual([...responseIds].sort());
    for (const e of charged) expect(e.data).toMatchObject({ key: { id: record.id, name: 'events' }, model: 'gpt-realtime', cost_nano: expect.stringMatching(/^[1-9]\d*$/) });
    expect(settled.map((e) => e.data.status).sort()).toEqual(['recovered', 'settled']);
    const chargedTotal = charged.reduce((total, e) => total + BigInt(e.data.cost_nano as string), 0n);
    expect(settled.reduce((total, e) => total + BigInt(e.data.cost_nano as string), 0n)).toBe(chargedTotal);

    // The operator's view: nothing pending, all delivered; /metrics counts the deliveries and the failures.
    await eventually('the outbox marked delivered', () => readSqlite(join(data.path, 'ledger.db'), (db) => db.prepare('SELECT COUNT(*) FROM usage_events WHERE delivered_at IS NULL').pluck().get() === 0n), 5_000);
    const backlog = await fetch(`${relay.httpUrl}/admin/usage-events`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    expect(await backlog.json()).toEqual({ object: 'usage_event_backlog', pending: 0, delivered: 5, failing: 0, oldest_pending_at: null, last_error: null });
    const metrics = await (await fetch(`${relay.httpUrl}/metrics`)).text();
    expect(metrics).toMatch(/relay_usage_events_delivered_total\{type="relay.usage.charged"\} [1-9]/);
    expect(metrics).toMatch(/relay_usage_events_failed_total\{type="relay.session.settled"\} [1-9]/);
    expect(receiver.refusedSignatures).toBe(0);

    // Sanity: what the relay signed does not verify once tampered with.
    const sample = receiver.accepted[0]!;
    const headers = { 'webhook-id': sample.webhookId, 'webhook-timestamp': String(sample.headers['webhook-timestamp']), 'webhook-signature': String(sample.headers['webhook-signature']) };
    const verifier = new Webhook(SECRET);
    expect(() => verifier.verify(sample.body, headers)).not.toThrow();
    expect(() => verifier.verify(sample.body.replace(/"cost_nano":"\d+"/, '"cost_nano":"1"'), headers)).toThrow();
    const signature = headers['webhook-signature'];
    const flipped = `${signature.slice(0, -2)}${signature.at(-2) === 'A' ? 'B' : 'A'}${signature.at(-1)}`;
    expect(() => verifier.verify(sample.body, { ...headers, 'webhook-signature': flipped })).toThrow();
    expect(() => new Webhook(`whsec_${randomBytes(24).toString('base64')}`).verify(sample.body, headers)).toThrow();
  });
});
