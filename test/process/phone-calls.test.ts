import { Webhook } from 'standardwebhooks';
import { afterAll, describe, expect, it } from 'vitest';
import { realtimeInvoice, usage } from '../billing/invoice.js';
import { readSqlite, sqliteLedgerFile } from '../helpers/ledger.js';
import { runRelay, spawnRelay, tempDataDir, type RelayProcess } from '../helpers/relay-process.js';

const SECRET = `whsec_${Buffer.from('the operator secret, 32 bytes!!').toString('base64')}`;
const TURN = usage({ text: [200, 50], audio: [600, 0], out: [30, 240] });

/** A webhook as OpenAI signs it, for a call the upstream never placed (so its rejection fails upstream, harmlessly). */
function signedWebhook(id: string, number: string): { body: string; headers: Record<string, string> } {
  const body = JSON.stringify({ object: 'event', id: 'evt_process', type: 'realtime.call.incoming', created_at: Math.floor(Date.now() / 1000), data: { call_id: 'rtc_nowhere', sip_headers: [{ name: 'To', value: `<sip:${number}@sip.api.openai.com>` }] } });
  const at = new Date();
  return { body, headers: { 'content-type': 'application/json', 'webhook-id': id, 'webhook-timestamp': String(Math.floor(at.getTime() / 1000)), 'webhook-signature': new Webhook(SECRET).sign(id, at, body) } };
}

describe('phone calls with the relay as a process (built-in simulator, SQLite)', () => {
  const dir = tempDataDir('relay-sip-');
  let relay: RelayProcess | undefined;
  afterAll(async () => {
    await relay?.kill();
    dir.remove();
  });

  it('refuses the webhook while OPENAI_WEBHOOK_SECRET is unset', async () => {
    relay = await spawnRelay({ dataDir: dir.path });
    const { body, headers } = signedWebhook('wh_unset', '+15550100000');
    const response = await fetch(`${relay.httpUrl}/v1/sip/webhook`, { method: 'POST', headers, body });
    expect(response.status).toBe(503);
    expect(await response.json()).toEqual({ error: expect.objectContaining({ code: 'webhook_not_configured', type: 'server_error' }) });
    await relay.stop();
    relay = undefined;
  });

  it('routes with `relay routes`, places a call at the built-in simulator, bills it, and ignores a webhook replayed after a restart', async () => {
    const created = await runRelay(['keys', 'create', '--name', 'frontdesk', '--balance', '5'], { RELAY_DATA_DIR: dir.path });
    expect(created.code).toBe(0);
    const key = JSON.parse(created.stdout) as { id: string };
    const added = await runRelay(['routes', 'add', '--number', '+15550100000', '--key', 'frontdesk', '--model', 'gpt-realtime', '--session', '{"instructions":"Front desk"}'], { RELAY_DATA_DIR: dir.path });
    expect(added.stderr).toBe('');
    const route = JSON.parse(added.stdout) as { id: string; number: string; key_id: string; session: unknown };
    expect(route).toMatchObject({ number: '+15550100000', key_id: key.id, session: { model: 'gpt-realtime', instructions: 'Front desk' } });
    const bad = await runRelay(['routes', 'add', '--number', '+15550100000', '--key', 'frontdesk', '--model', 'gpt-realtime'], { RELAY_DATA_DIR: dir.path });
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toContain('exists already');

    relay = await spawnRelay({ dataDir: dir.path, env: { OPENAI_WEBHOOK_SECRET: SECRET } });
    const line = await relay.waitForLog((l) => typeof l.msg === 'string' && l.msg.startsWith('phone calls: POST '), 'the simulator control line');
    const placeUrl = /POST (\S+)/.exec(line.msg!)![1]!;
    const placed = await fetch(placeUrl, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ to: '+15550100000', turns: [{ usage: TURN }], hangUpAfterTurns: true }) });
    expect(placed.status).toBe(200);
    expect(await placed.json()).toMatchObject({ webhook: { status: 200 } });
    await relay.waitForLog((l) => l.event === 'session.end' || (typeof l.msg === 'string' && l.msg.includes('session ended')), 'the call session ending', 15_000);
    const ledgerFile = sqliteLedgerFile(dir.path);
    await expect
      .poll(() => readSqlite(ledgerFile, (db) => db.prepare("SELECT t.total_nano, t.charge_count, s.transport FROM settlements t JOIN sessions s ON s.id = t.session_id").all()))
      .toEqual([{ total_nano: realtimeInvoice('gpt-realtime', TURN), charge_count: 1n, transport: 'sip' }]);

    const webhook = signedWebhook('wh_durable', '+15559999999');
    expect((await fetch(`${relay.httpUrl}/v1/sip/webhook`, { method: 'POST', headers: webhook.headers, body: webhook.body })).status).toBe(200);
    await relay.waitForLog((l) => l.event === 'sip.call' && l.outcome === 'unrouted', 'the unrouted call');
    await relay.stop();
    relay = await spawnRelay({ dataDir: dir.path, env: { OPENAI_WEBHOOK_SECRET: SECRET } });
    expect((await fetch(`${relay.httpUrl}/v1/sip/webhook`, { method: 'POST', headers: webhook.headers, body: webhook.body })).status).toBe(200);
    await relay.waitForLog((l) => l.event === 'sip.webhook' && l.verdict === 'replayed', 'the replay ignored');
    expect(relay.logs.filter((l) => l.event === 'sip.call')).toEqual([]);

    const listed = await runRelay(['routes', 'list'], { RELAY_DATA_DIR: dir.path });
    expect(JSON.parse(listed.stdout)).toEqual([expect.objectContaining({ id: route.id })]);
    const removed = await runRelay(['routes', 'remove', route.id], { RELAY_DATA_DIR: dir.path });
    expect(JSON.parse(removed.stdout)).toEqual({ id: route.id, deleted: true });
  });
});
