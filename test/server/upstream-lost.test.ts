import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { TEST_KEY } from '../helpers/recording-billing.js';
import { startTestRelay, type RecordingTestRelay } from '../helpers/relay.js';

/*
 * A client whose upstream is lost mid-session reads why in an `error` event,
 * and only then gets the close frame: a plain `ws` client, logging in order.
 */

let stack: RecordingTestRelay | undefined;
afterEach(async () => {
  await stack?.close();
  stack = undefined;
});

type Seen = { event: string; code?: string } | { close: number; reason: string };

/** Opens a session and records what the client sees, events and close alike, in arrival order. */
async function watchedSession(relay: RecordingTestRelay): Promise<{ socket: WebSocket; seen: Seen[]; closed: Promise<void> }> {
  const socket = new WebSocket(relay.url(), { headers: { Authorization: `Bearer ${TEST_KEY}` }, perMessageDeflate: false });
  const seen: Seen[] = [];
  let created: () => void;
  const sessionCreated = new Promise<void>((resolve) => (created = resolve));
  socket.on('message', (data) => {
    const event = JSON.parse(String(data)) as { type: string; error?: { code?: string } };
    seen.push(event.type === 'error' ? { event: 'error', code: event.error?.code } : { event: event.type });
    if (event.type === 'session.created') created();
  });
  const closed = new Promise<void>((resolve) =>
    socket.once('close', (code, reason) => {
      seen.push({ close: code, reason: reason.toString() });
      resolve();
    }),
  );
  await sessionCreated;
  return { socket, seen, closed };
}

describe('a session whose upstream is lost', () => {
  it('tells the client upstream_closed, then closes 1011, when the upstream connection drops', async () => {
    stack = await startTestRelay({ billing: 'recording' });
    const { socket, seen, closed } = await watchedSession(stack);
    socket.send(JSON.stringify({ type: 'simulator.fault', fault: { kind: 'drop' } }));
    await closed;
    expect(seen.slice(-2)).toEqual([
      { event: 'error', code: 'upstream_closed' },
      { close: 1011, reason: 'upstream_closed' },
    ]);
    await stack.billing.settled(1);
    expect(stack.billing.settlements[0]).toMatchObject({ endReason: 'upstream_closed', clientCloseCode: 1011, upstreamCloseCode: 1006 });
  });

  it('tells the client upstream_timeout, then closes 1011, when the upstream stops answering pings', async () => {
    stack = await startTestRelay({ billing: 'recording', settings: { pingIntervalMs: 150 } });
    const { socket, seen, closed } = await watchedSession(stack);
    socket.send(JSON.stringify({ type: 'simulator.fault', fault: { kind: 'silence' } }));
    await closed;
    expect(seen.slice(-2)).toEqual([
      { event: 'error', code: 'upstream_timeout' },
      { close: 1011, reason: 'upstream_timeout' },
    ]);
    await stack.billing.settled(1);
    expect(stack.billing.settlements[0]).toMatchObject({ endReason: 'error:upstream_timeout', clientCloseCode: 1011, upstreamCloseCode: 1011 });
  });

  it("passes an upstream's own close frame through without an error event of the relay's", async () => {
    stack = await startTestRelay({ billing: 'recording' });
    const { socket, seen, closed } = await watchedSession(stack);
    socket.send(JSON.stringify({ type: 'simulator.fault', fault: { kind: 'close', code: 4001, reason: 'upstream says bye' } }));
    await closed;
    expect(seen).toEqual([{ event: 'session.created' }, { close: 4001, reason: 'upstream says bye' }]);
  });
});
