import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { build } from 'esbuild';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { realtimeInvoice, usage, type RealtimeUsage } from '../billing/invoice.js';
import { HAVE_CHROMIUM, WEBRTC_ARGS, openChromium, servePages, type OpenChromium, type ServedPages } from '../helpers/chromium.js';
import { startTestRelay, type LedgerTestRelay } from '../helpers/relay.js';

/**
 * The Agents SDK's own browser transport, unmodified: `OpenAIRealtimeWebRTC`
 * bundled for a page on another origin, given a client secret the app's server
 * minted and the relay's calls URL as its `baseUrl`.
 */
const ENTRY = `
import { OpenAIRealtimeWebRTC } from '@openai/agents-realtime';
window.run = async (callsUrl, clientSecret, simUsage) => {
  const transport = new OpenAIRealtimeWebRTC({ baseUrl: callsUrl });
  const events = [];
  const done = new Promise((resolve) => {
    transport.on('*', (event) => {
      events.push(event.type);
      if (event.type === 'response.done') resolve(event.response);
    });
  });
  await transport.connect({ apiKey: clientSecret, model: 'gpt-realtime' });
  transport.sendEvent({ type: 'response.create', response: { output_modalities: ['text'], metadata: { sim_usage: simUsage } } });
  const response = await done;
  const callId = transport.callId;
  transport.close();
  return { callId, events, response };
};
`;

describe.skipIf(!HAVE_CHROMIUM)('the Agents SDK\'s WebRTC transport in a browser, through the relay', () => {
  let stack: LedgerTestRelay;
  let pages: ServedPages;
  let chromium: OpenChromium;
  let bundleDir: string;

  beforeAll(async () => {
    stack = await startTestRelay({ simulator: { chunkIntervalMs: 1 } });
    bundleDir = mkdtempSync(join(tmpdir(), 'relay-agents-sdk-'));
    const bundle = join(bundleDir, 'page.js');
    await build({ stdin: { contents: ENTRY, resolveDir: process.cwd(), loader: 'js' }, bundle: true, platform: 'browser', format: 'iife', outfile: bundle, logLevel: 'silent' });
    const script = readFileSync(bundle, 'utf8');
    // localhost, not 127.0.0.1: another origin than the relay's, so the SDK's requests are CORS ones.
    pages = await servePages((req, res) => {
      if (req.url === '/page.js') res.writeHead(200, { 'content-type': 'text/javascript; charset=utf-8' }).end(script);
      else res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end('<!doctype html><meta charset="utf-8"><title>agents sdk call</title><script src="/page.js"></script>');
    }, 'localhost');
    chromium = await openChromium(undefined, WEBRTC_ARGS);
    chromium.page.setDefaultTimeout(15_000);
  });

  afterAll(async () => {
    await chromium?.close();
    await pages?.close();
    if (bundleDir) rmSync(bundleDir, { recursive: true, force: true });
    await stack?.close();
  });

  it('connects with a client secret, gets its response.done, and the call is billed exactly that usage', async () => {
    const { key, record } = await stack.createKey();
    const minted = await fetch(`${stack.httpUrl}/v1/realtime/client_secrets`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ session: { type: 'realtime', model: 'gpt-realtime' } }),
    });
    expect(minted.status).toBe(200);
    const secret = ((await minted.json()) as { value: string }).value;
    expect(secret).toMatch(/^ek_/);
    const u = usage({ text: [70, 0], audio: [900, 300], out: [30, 60] });
    await chromium.page.goto(pages.url);
    const result = (await chromium.page.evaluate(([url, s, sim]) => (globalThis as unknown as { run(a: string, b: string, c: string): Promise<unknown> }).run(url!, s!, sim!), [
      `${stack.httpUrl}/v1/realtime/calls`,
      secret,
      JSON.stringify(u),
    ] as const)) as { callId: string; events: string[]; response: { id: string; usage: RealtimeUsage } };
    // The SDK read the relay's call id from Location, and saw its session config acknowledged.
    expect(result.callId).toMatch(/^rtc_[0-9a-f]{32}$/);
    expect(result.events[0]).toBe('session.created');
    expect(result.events).toContain('session.updated');
    expect(result.events.at(-1)).toBe('response.done');
    expect(result.response.usage).toEqual(u);
    // The SDK's close() leaves the call: the relay sees it end and settles it once.
    await expect.poll(() => stack.sim.activeCalls, { timeout: 15_000 }).toBe(0);
    await stack.idle();
    const expected = realtimeInvoice('gpt-realtime', u);
    const book = await stack.view.book(record.id);
    expect(book.charges.map((c) => [c.itemId, c.costNano])).toEqual([[result.response.id, expected]]);
    expect(book.settlements).toEqual([expect.objectContaining({ totalNano: expected, chargeCount: 1 })]);
    expect(book.balanceNano).toBe(record.balanceNano - expected);
  });
});
