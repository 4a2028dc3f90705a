import { afterEach, describe, expect, it } from 'vitest';
import { startSimulator } from '../../src/simulator/index.js';
import type { Simulator } from '../../src/simulator/index.js';
import { CHROMIUM, HAVE_CHROMIUM, WEBRTC_ARGS, openChromium, servePages } from '../helpers/chromium.js';
import type { OpenChromium, ServedPages } from '../helpers/chromium.js';
import { TestClient } from '../helpers/client.js';
import { eventually } from '../helpers/wait.js';

/*
 * A real browser calls the simulator as it would call OpenAI: headless
 * Chromium with a fake microphone, on a page served from another origin,
 * posts its offer, talks over `oai-events` and hears audio. Without Chromium
 * the test is skipped with a reason locally, and fails in CI.
 */

if (!HAVE_CHROMIUM && !process.env.CI) {
  console.warn(`Skipping the browser WebRTC test: no Chromium at ${CHROMIUM} (install it with: apt-get update && apt-get install -y chromium).`);
}

const KEY = 'sk-browser-call';

let sim: Simulator | undefined;
let page: ServedPages | undefined;
let browser: OpenChromium | undefined;
let sideband: TestClient | undefined;
afterEach(async () => {
  sideband?.close();
  await browser?.close();
  await sim?.close();
  await page?.close();
  sim = undefined;
  page = undefined;
  browser = undefined;
  sideband = undefined;
});

/**
 * The page's part of the call, as an app's would be: the offer is posted at
 * once (no waiting for ICE), as OpenAI's own browser examples do.
 */
const PAGE_SCRIPT = `
  window.call = { events: [] };
  window.startCall = async (url, key) => {
    const pc = new RTCPeerConnection();
    const mic = await navigator.mediaDevices.getUserMedia({ audio: true });
    for (const track of mic.getTracks()) pc.addTrack(track, mic);
    const channel = pc.createDataChannel('oai-events');
    channel.onmessage = (e) => window.call.events.push(JSON.parse(e.data));
    Object.assign(window.call, { pc, channel });
    await pc.setLocalDescription(await pc.createOffer());
    const res = await fetch(url, {
      method: 'POST',
      headers: { Authorization: 'Bearer ' + key, 'Content-Type': 'application/sdp', 'X-OpenAI-Agents-SDK': 'openai-agents-sdk.realtime' },
      body: pc.localDescription.sdp,
    });
    const body = await res.text();
    if (res.status === 201) await pc.setRemoteDescription({ type: 'answer', sdp: body });
    return { status: res.status, location: res.headers.get('location') };
  };
  window.firstEvent = (type) => window.call.events.find((e) => e.type === type);
  window.audioPacketsReceived = async () => {
    let packets = 0;
    (await window.call.pc.getStats()).forEach((r) => {
      if (r.type === 'inbound-rtp' && r.kind === 'audio') packets += r.packetsReceived || 0;
    });
    return packets;
  };
`;

/** A page on its own origin (another port), so the call is a cross-origin request as in an app. */
async function servePage(): Promise<string> {
  const html = `<!doctype html><title>call</title><script>${PAGE_SCRIPT}</script>`;
  page = await servePages(html);
  return page.url;
}

interface PageCall {
  status: number;
  location: string | null;
}

interface ResponseDone {
  response: { status: string; usage: { total_tokens: number } };
}

describe('a browser calling the simulator over WebRTC', () => {
  it.runIf(!HAVE_CHROMIUM && process.env.CI)('has Chromium to run in CI', () => {
    throw new Error(`CI must provide Chromium at ${CHROMIUM}`);
  });

  it.skipIf(!HAVE_CHROMIUM)('opens oai-events, gets response.done for its response.create, receives audio packets, and its close ends the call', async () => {
    sim = await startSimulator({ apiKey: KEY });
    const callsUrl = `${sim.url.replace(/^ws/, 'http')}/v1/realtime/calls?model=gpt-realtime`;
    const pageUrl = await servePage();
    browser = await openChromium(undefined, WEBRTC_ARGS);
    const tab = browser.page;
    await tab.goto(pageUrl);

    const answered = (await tab.evaluate(`startCall(${JSON.stringify(callsUrl)}, ${JSON.stringify(KEY)})`)) as PageCall;
    expect(answered.status).toBe(201);
    // Readable cross-origin only because Location is exposed.
    expect(answered.location).toMatch(/^\/v1\/realtime\/calls\/rtc_[0-9a-f]+$/);
    const callId = answered.location!.split('/').at(-1)!;

    await tab.waitForFunction(`window.call.channel.readyState === 'open'`, undefined, { timeout: 10_000 });
    await tab.waitForFunction(`firstEvent('session.created')`);
    sideband = TestClient.connect(`${sim.url}/v1/realtime?call_id=${callId}`, { key: KEY });
    await sideband.next('session.created');

    await tab.evaluate(`window.call.channel.send(JSON.stringify({ type: 'response.create' }))`);
    const done = (await (await tab.waitForFunction(`firstEvent('response.done')`, undefined, { timeout: 10_000 })).jsonValue()) as ResponseDone;
    expect(done.response.status).toBe('completed');
    expect(done.response.usage.total_tokens).toBeGreaterThan(0);
    expect((await sideband.next('response.done')).response).toEqual(done.response);

    const packetsReceived = (await (
      await tab.waitForFunction(`audioPacketsReceived().then((n) => (n > 0 ? n : false))`, undefined, { timeout: 5_000, polling: 100 })
    ).jsonValue()) as number;
    expect(packetsReceived).toBeGreaterThan(0);

    // The browser hanging up is the call ending: the sideband is told with 1000.
    await tab.evaluate(`window.call.pc.close()`);
    expect((await sideband.closedWith()).code).toBe(1000);
    await eventually('the call to end', () => sim!.activeCalls === 0);
  }, 40_000);
});
