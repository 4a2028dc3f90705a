import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { realtimeInvoice, usage, type RealtimeUsage } from '../billing/invoice.js';
import { CHROMIUM, CHROMIUM_ARGS, HAVE_CHROMIUM, WEBRTC_ARGS, servePages, type ServedPages } from '../helpers/chromium.js';
import { startTestRelay, type LedgerTestRelay } from '../helpers/relay.js';

/**
 * What a web page does with nothing but the browser's WebRTC: the fake
 * microphone's track and the `oai-events` channel in one offer, posted to the
 * relay (another origin than the page's) the way the Agents SDK posts it,
 * then one response asked for and the call hung up through the relay.
 */
const PAGE = `<!doctype html>
<meta charset="utf-8">
<title>realtime relay call from a browser</title>
<script>
  window.run = async (callsUrl, key, simUsage) => {
    const relayOrigin = new URL(callsUrl).origin;
    const media = await navigator.mediaDevices.getUserMedia({ audio: true });
    const pc = new RTCPeerConnection();
    pc.addTrack(media.getTracks()[0], media);
    const channel = pc.createDataChannel('oai-events');
    const events = [];
    const done = new Promise((resolve) => {
      channel.onmessage = (message) => {
        const event = JSON.parse(message.data);
        events.push(event.type);
        if (event.type === 'response.done') resolve(event.response);
      };
    });
    const opened = new Promise((resolve) => { channel.onopen = resolve; });
    // The upstream hanging up is seen as the channel closing or the connection dropping, whichever comes first.
    const ended = new Promise((resolve) => {
      channel.onclose = resolve;
      pc.onconnectionstatechange = () => { if (pc.connectionState !== 'connected' && pc.connectionState !== 'connecting' && pc.connectionState !== 'new') resolve(); };
    });
    await pc.setLocalDescription(await pc.createOffer());
    const answer = await fetch(callsUrl, {
      method: 'POST',
      headers: { Authorization: 'Bearer ' + key, 'Content-Type': 'application/sdp', 'X-OpenAI-Agents-SDK': 'page' },
      body: pc.localDescription.sdp,
    });
    const location = answer.headers.get('Location');
    await pc.setRemoteDescription({ type: 'answer', sdp: await answer.text() });
    await opened;
    channel.send(JSON.stringify({ type: 'response.create', response: { output_modalities: ['text'], metadata: { sim_usage: simUsage } } }));
    const response = await done;
    const hangup = await fetch(relayOrigin + location + '/hangup', { method: 'POST', headers: { Authorization: 'Bearer ' + key } });
    await ended;
    pc.close();
    media.getTracks().forEach((track) => track.stop());
    return { status: answer.status, location, events, response, hangup: hangup.status };
  };
</script>`;

describe.skipIf(!HAVE_CHROMIUM)('a real browser (chromium) calling through the relay over WebRTC', () => {
  let stack: LedgerTestRelay;
  let pages: ServedPages;
  let browser: Browser;

  beforeAll(async () => {
    stack = await startTestRelay({ simulator: { chunkIntervalMs: 1 } });
    // localhost, not 127.0.0.1: the page's origin differs from the relay's, so every request is a CORS one.
    pages = await servePages(PAGE, 'localhost');
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [...CHROMIUM_ARGS, ...WEBRTC_ARGS],
      timeout: 20_000,
    });
  });

  afterAll(async () => {
    await browser?.close();
    await pages?.close();
    await stack?.close();
  });

  it('places the call from another origin, speaks over oai-events, and is billed exactly', async () => {
    const { key, record } = await stack.createKey();
    const u = usage({ text: [80, 0], audio: [1200, 400], out: [25, 90] });
    const page = await browser.newPage();
    try {
      await page.goto(pages.url);
      const result = (await page.evaluate(([url, k, sim]) => (globalThis as unknown as { run(a: string, b: string, c: string): Promise<unknown> }).run(url!, k!, sim!), [
        `${stack.httpUrl}/v1/realtime/calls?model=gpt-realtime`,
        key,
        JSON.stringify(u),
      ] as const)) as { status: number; location: string; events: string[]; response: { id: string; usage: RealtimeUsage }; hangup: number };
      expect(result.status).toBe(201);
      expect(result.location).toMatch(/^\/v1\/realtime\/calls\/rtc_[0-9a-f]{32}$/);
      expect(result.events[0]).toBe('session.created');
      expect(result.events.at(-1)).toBe('response.done');
      expect(result.response.usage).toEqual(u);
      expect(result.hangup).toBe(200);
      await stack.idle();
      const expected = realtimeInvoice('gpt-realtime', u);
      const book = await stack.view.book(record.id);
      expect(book.charges.map((c) => [c.itemId, c.costNano])).toEqual([[result.response.id, expected]]);
      expect(book.settlements).toEqual([expect.objectContaining({ totalNano: expected, chargeCount: 1, endReason: 'client_closed' })]);
      expect(book.balanceNano).toBe(record.balanceNano - expected);
    } finally {
      await page.close();
    }
  });
});
