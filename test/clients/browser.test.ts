import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CHROMIUM, CHROMIUM_ARGS, HAVE_CHROMIUM, servePages, type ServedPages } from '../helpers/chromium.js';
import { startTestRelay, type LedgerTestRelay } from '../helpers/relay.js';

/**
 * What a web page does with nothing but the browser's WebSocket: the key
 * travels in a subprotocol, and everything the page learns it shows.
 */
const PAGE = `<!doctype html>
<meta charset="utf-8">
<title>realtime relay from a browser</title>
<dl>
  <dt>protocol</dt><dd id="protocol"></dd>
  <dt>events</dt><dd id="events"></dd>
  <dt>error</dt><dd id="error"></dd>
  <dt>close</dt><dd id="close"></dd>
</dl>
<script>
  const params = new URLSearchParams(location.search);
  const show = (id, text) => { document.getElementById(id).textContent = text; };
  const events = [];
  const ws = new WebSocket(params.get('url'), ['realtime', 'openai-insecure-api-key.' + params.get('key')]);
  ws.onopen = () => show('protocol', ws.protocol);
  ws.onmessage = (message) => {
    const event = JSON.parse(message.data);
    events.push(event.type);
    show('events', events.join(' '));
    if (event.type === 'error') show('error', event.error.code + ': ' + event.error.message);
    if (event.type === 'session.created') ws.send(JSON.stringify({ type: 'response.create', response: { output_modalities: ['text'] } }));
    if (event.type === 'response.done') ws.close(1000, 'done');
  };
  ws.onclose = (close) => show('close', close.code + ' ' + close.reason);
</script>`;

if (!HAVE_CHROMIUM) {
  const reason = `chromium not found at ${CHROMIUM} (install it with: apt-get install -y chromium)`;
  if (process.env.CI) {
    describe('a real browser', () => {
      it('has chromium to run in', () => {
        throw new Error(reason);
      });
    });
  } else {
    console.warn(`skipping the browser tests: ${reason}`);
  }
}

describe.skipIf(!HAVE_CHROMIUM)('a real browser (chromium) with the WebSocket API', () => {
  let stack: LedgerTestRelay;
  let pages: ServedPages;
  let browser: Browser;

  beforeAll(async () => {
    stack = await startTestRelay({ simulator: { chunkIntervalMs: 1 } });
    pages = await servePages(PAGE);
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, timeout: 20_000 });
  });

  afterAll(async () => {
    await browser?.close();
    await pages?.close();
    await stack?.close();
  });

  async function openPage(key: string): Promise<Page> {
    const page = await browser.newPage();
    await page.goto(`${pages.url}?${new URLSearchParams({ url: stack.realtimeUrl(), key })}`);
    await page.locator('#close').filter({ hasText: /\d/ }).waitFor({ timeout: 10_000 });
    return page;
  }

  it('completes a response over subprotocol auth and shows the negotiated protocol', async () => {
    const page = await openPage(stack.key);
    expect(await page.textContent('#protocol')).toBe('realtime');
    const events = (await page.textContent('#events'))!.split(' ');
    expect(events[0]).toBe('session.created');
    expect(events).toContain('response.output_text.delta');
    expect(events.at(-1)).toBe('response.done');
    expect(await page.textContent('#error')).toBe('');
    expect(await page.textContent('#close')).toBe('1000 done');
    await page.close();
    await stack.idle();
    const charges = await stack.ledger.usage({ key: 'demo' });
    expect(charges).toHaveLength(1);
  });

  it('lets the page read why a wrong key was refused', async () => {
    const page = await openPage('rk_not_a_key');
    // The page sees an error event and a close it can read, not a bare 1006.
    expect(await page.textContent('#error')).toMatch(/^invalid_api_key: /);
    expect(await page.textContent('#close')).toBe('1008 invalid_api_key');
    expect(await page.textContent('#protocol')).toBe('realtime');
    await page.close();
  });
});
