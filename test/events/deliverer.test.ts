import Database from 'better-sqlite3';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Webhook } from 'standardwebhooks';
import { afterEach, describe, expect, it } from 'vitest';
import { openLedger, type Ledger } from '../../src/billing/ledger/index.js';
import { ConfigError, loadSettings } from '../../src/config/settings.js';
import { retryDelayMs, startUsageDelivery, type UsageDelivery } from '../../src/events/deliverer.js';
import { eventually } from '../helpers/wait.js';

const SECRET = `whsec_${randomBytes(24).toString('base64')}`;

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** An SQLite ledger that writes usage events, with one session charged `items` times and settled. */
async function ledgerWithEvents(items: number): Promise<Ledger> {
  const dir = mkdtempSync(join(tmpdir(), 'usage-delivery-'));
  const ledger = await openLedger({ sqlitePath: join(dir, 'ledger.db'), usageEvents: true });
  cleanups.push(async () => {
    await ledger.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const { record } = await ledger.createKey({ name: 'acme', balanceNano: 1_000_000n });
  await ledger.openSession({ id: 'sess_1', keyId: record.id, model: 'gpt-realtime', upstream: 'openai', instanceId: 'relay-a', startedAt: new Date() });
  for (let i = 0; i < items; i += 1) {
    await ledger.recordCharge({ sessionId: 'sess_1', keyId: record.id, kind: 'response', itemId: `resp_${i}`, model: 'gpt-realtime', costNano: 1_000n, usage: { total_tokens: i } });
  }
  await ledger.settleSession({ sessionId: 'sess_1', endedAt: new Date(), endReason: 'client_closed', status: 'settled', summary: {} });
  return ledger;
}

/** A receiver whose answer the test chooses per request. */
async function receiver(answer: (count: number) => number): Promise<{ url: string; ids: string[]; statuses: number[] }> {
  const ids: string[] = [];
  const statuses: number[] = [];
  const verifier = new Webhook(SECRET);
  const server: Server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8').on('data', (chunk: string) => (body += chunk)).on('end', () => {
      const status = answer(statuses.length);
      statuses.push(status);
      if (status >= 200 && status < 300) ids.push((verifier.verify(body, req.headers as Record<string, string>) as { id: string }).id);
      res.writeHead(status, status >= 300 && status < 400 ? { location: 'http://127.0.0.1:1/' } : {}).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`, ids, statuses };
}

function deliver(ledger: Ledger, url: string, failed: string[] = [], delivered: string[] = []): UsageDelivery {
  const delivery = startUsageDelivery({
    ledger,
    url,
    secret: SECRET,
    pollMs: 20,
    retryMs: 20,
    maxRetryMs: 100,
    timeoutMs: 1_000,
    batchSize: 4,
    hooks: { failed: (_event, reason) => failed.push(reason), delivered: (event) => delivered.push(event.id) },
  });
  cleanups.push(() => delivery.stop());
  return delivery;
}

describe('usage event delivery', () => {
  it('sends every event once to a receiver that answers 2xx, in batches', async () => {
    const ledger = await ledgerWithEvents(9);
    const target = await receiver(() => 204);
    const delivered: string[] = [];
    deliver(ledger, target.url, [], delivered);
    await eventually('ten events delivered', () => target.ids.length === 10, 5_000);
    expect(new Set(target.ids).size).toBe(10);
    expect(target.statuses).toHaveLength(10);
    await eventually('all marked delivered', () => delivered.length === 10, 5_000);
    expect(await ledger.usageEventBacklog()).toMatchObject({ pending: 0, delivered: 10 });
  });

  it('retries an event the receiver refused until it takes it, under the same id', async () => {
    const ledger = await ledgerWithEvents(0);
    const target = await receiver((count) => (count < 3 ? 503 : 200));
    const failed: string[] = [];
    deliver(ledger, target.url, failed);
    await eventually('the settlement delivered', () => target.ids.length === 1, 5_000);
    expect(target.statuses).toEqual([503, 503, 503, 200]);
    expect(failed).toEqual(['the receiver answered 503', 'the receiver answered 503', 'the receiver answered 503']);
    expect(target.ids).toEqual(['stl_sess_1']);
  });

  it('counts a redirect as a failure: signed usage goes only where it was configured to', async () => {
    const ledger = await ledgerWithEvents(0);
    const target = await receiver(() => 307);
    const failed: string[] = [];
    deliver(ledger, target.url, failed);
    await eventually('a failed attempt', () => failed.length > 0, 5_000);
    expect(failed[0]).toBe('the receiver answered 307');
    expect(await ledger.usageEventBacklog()).toMatchObject({ pending: 1, failing: 1, lastError: 'the receiver answered 307' });
  });

  it('leaves what it has not sent in the outbox when stopped', async () => {
    const ledger = await ledgerWithEvents(2);
    const failed: string[] = [];
    // Nothing listens on port 1: every attempt is refused.
    const delivery = deliver(ledger, 'http://127.0.0.1:1/', failed);
    await eventually('a refused attempt', () => failed.length > 0, 5_000);
    await delivery.stop();
    expect((await ledger.usageEventBacklog()).pending).toBe(3);
  });

  it('deletes delivered events past the retention on its own timer, a batch at a time, and never an undelivered one', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'usage-retention-'));
    const path = join(dir, 'ledger.db');
    const ledger = await openLedger({ sqlitePath: path, usageEvents: true });
    cleanups.push(async () => {
      await ledger.close();
      rmSync(dir, { recursive: true, force: true });
    });
    const { record } = await ledger.createKey({ name: 'acme', balanceNano: 1_000_000n });
    await ledger.openSession({ id: 'sess_1', keyId: record.id, model: 'gpt-realtime', upstream: 'openai', instanceId: 'relay-a', startedAt: new Date() });
    for (let i = 0; i < 4; i += 1) {
      await ledger.recordCharge({ sessionId: 'sess_1', keyId: record.id, kind: 'response', itemId: `resp_${i}`, model: 'gpt-realtime', costNano: 1_000n, usage: {} });
    }
    // Three events delivered: two of them two hours ago, one just now.
    for (const event of await ledger.claimUsageEvents({ limit: 3, leaseMs: 60_000 })) await ledger.usageEventDelivered(event.id);
    const db = new Database(path);
    cleanups.push(() => void db.close());
    const hoursAgo = (hours: number) => Date.now() - hours * 3_600_000;
    db.prepare('UPDATE usage_events SET delivered_at = ? WHERE id IN (SELECT id FROM usage_events ORDER BY id LIMIT 2)').run(hoursAgo(2));
    // The fourth is a month old and was never delivered: the receiver refuses it.
    db.prepare('UPDATE usage_events SET created_at = ? WHERE delivered_at IS NULL').run(hoursAgo(24 * 30));
    const eventIds = () => (db.prepare('SELECT event_id FROM usage_events ORDER BY id').pluck().all() as string[]).map((id) => id.replace(/^chg_sess_1_/, 'charge '));
    expect(eventIds()).toEqual(['charge 1', 'charge 2', 'charge 3', 'charge 4']);

    const target = await receiver(() => 500);
    const pruned: number[] = [];
    const delivery = startUsageDelivery({
      ledger, url: target.url, secret: SECRET, pollMs: 20, retryMs: 20, maxRetryMs: 100, timeoutMs: 1_000,
      retention: { keepMs: 3_600_000, batchSize: 1, everyMs: 20 },
      hooks: { pruned: (count) => pruned.push(count) },
    });
    cleanups.push(() => delivery.stop());
    await eventually('the two old delivered events deleted', () => eventIds().length === 2, 5_000);
    await eventually('the refused event tried again', () => target.statuses.length >= 2, 5_000);
    expect(eventIds()).toEqual(['charge 3', 'charge 4']);
    // Two batches of one, in one pass.
    expect(pruned).toEqual([2]);
    expect(await ledger.usageEventBacklog()).toMatchObject({ pending: 1, delivered: 1 });
  });

  it('backs off exponentially up to the cap, never sooner than half the delay', () => {
    expect([1, 2, 3, 4, 5, 6].map((attempts) => retryDelayMs(attempts, 100, 1_000, () => 0.999999))).toEqual([100, 200, 400, 800, 1_000, 1_000]);
    expect([1, 2, 3, 10].map((attempts) => retryDelayMs(attempts, 100, 1_000, () => 0))).toEqual([50, 100, 200, 500]);
    expect(retryDelayMs(1_000, 1_000, 300_000, () => 0.5)).toBe(225_000);
  });
});

describe('usage webhook settings', () => {
  it('refuses a webhook URL without its signing secret', () => {
    expect(() => loadSettings({ RELAY_USAGE_WEBHOOK_URL: 'https://billing.example.com/usage' })).toThrow(ConfigError);
    expect(() => loadSettings({ RELAY_USAGE_WEBHOOK_URL: 'https://billing.example.com/usage' })).toThrow(/RELAY_USAGE_WEBHOOK_SECRET/);
    expect(loadSettings({ RELAY_USAGE_WEBHOOK_URL: 'https://billing.example.com/usage', RELAY_USAGE_WEBHOOK_SECRET: SECRET }).usageWebhookUrl).toBe('https://billing.example.com/usage');
  });

  it('refuses plain http except to this machine, and a secret that is not whsec_ base64', () => {
    expect(() => loadSettings({ RELAY_USAGE_WEBHOOK_URL: 'http://billing.example.com/usage', RELAY_USAGE_WEBHOOK_SECRET: SECRET })).toThrow(/https:\/\//);
    expect(loadSettings({ RELAY_USAGE_WEBHOOK_URL: 'http://127.0.0.1:9000/usage', RELAY_USAGE_WEBHOOK_SECRET: SECRET }).usageWebhookUrl).toBe('http://127.0.0.1:9000/usage');
    expect(() => loadSettings({ RELAY_USAGE_WEBHOOK_URL: 'https://billing.example.com/usage', RELAY_USAGE_WEBHOOK_SECRET: 'not-a-secret' })).toThrow(/whsec_/);
    expect(() => loadSettings({ RELAY_USAGE_WEBHOOK_URL: 'https://billing.example.com/usage', RELAY_USAGE_WEBHOOK_SECRET: 'whsec_' })).toThrow(/whsec_/);
  });

  it('keeps delivered events a week unless told otherwise, and refuses a retention that is not whole hours', () => {
    expect(loadSettings({}).usageEventsRetentionHours).toBe(168);
    expect(loadSettings({ RELAY_USAGE_EVENTS_RETENTION_HOURS: '24' }).usageEventsRetentionHours).toBe(24);
    for (const wrong of ['0', '1.5', 'a week', '100000']) {
      expect(() => loadSettings({ RELAY_USAGE_EVENTS_RETENTION_HOURS: wrong })).toThrow(/RELAY_USAGE_EVENTS_RETENTION_HOURS/);
    }
  });
});
