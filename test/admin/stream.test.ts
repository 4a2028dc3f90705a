import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { openLedger, type Ledger } from '../../src/billing/ledger/index.js';
import { adminApp } from '../../src/server/admin/index.js';
import type { TestClient } from '../helpers/client.js';
import { startTestRelay, type RecordingTestRelay } from '../helpers/relay.js';

const TOKEN = 'admin-token-for-tests-0123456789';

let stack: RecordingTestRelay | undefined;
let ledger: Ledger | undefined;
let dataDir: string | undefined;
afterEach(async () => {
  await stack?.close();
  await ledger?.close();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  stack = undefined;
  ledger = undefined;
  dataDir = undefined;
});

/** The relay with the admin app mounted; `refreshMs` is how often the stream refreshes on its own. */
async function start(refreshMs: number): Promise<RecordingTestRelay> {
  dataDir = mkdtempSync(join(tmpdir(), 'relay-admin-stream-'));
  const opened = await openLedger({ sqlitePath: join(dataDir, 'ledger.db') });
  ledger = opened;
  stack = await startTestRelay({
    billing: 'recording',
    server: { routes: (app, relay) => app.route('/admin', adminApp({ token: TOKEN, ledger: opened, registry: relay.registry, streamRefreshMs: refreshMs })) },
  });
  return stack;
}

async function openStream(signal: AbortSignal) {
  const response = await fetch(`${stack!.relay.url().replace(/^ws/, 'http')}/admin/sessions/stream`, { headers: { Authorization: `Bearer ${TOKEN}` }, signal });
  expect(response.status).toBe(200);
  expect(response.headers.get('content-type')).toMatch(/^text\/event-stream/);
  return sseReader(response);
}

describe('the live sessions stream', () => {
  it('pushes every lifecycle change as it happens, without waiting for the refresh', async () => {
    // An hour between refreshes: every list after the first is a push.
    await start(3_600_000);
    const registry = stack!.relay.registry;
    const abort = new AbortController();
    const events = await openStream(abort.signal);
    expect(await events.until((list) => list.length === 0)).toEqual([]);
    expect(registry.listenerCount('changed')).toBe(1);

    stack!.sim.queueHandshakeFault({ kind: 'hold' });
    const client = stack!.connect();
    const [connecting] = await events.until((list) => list[0]?.state === 'connecting');
    expect(connecting).toMatchObject({ key: { name: 'test' }, model: 'gpt-realtime', upstream: null, response_in_flight: false, spend: '0.000000' });
    await vi.waitFor(() => expect(stack!.sim.handshakes.length).toBe(1));
    stack!.sim.releaseHeld();
    const [relaying] = await events.until((list) => list[0]?.state === 'relaying');
    expect(relaying!.upstream).toMatchObject({ name: 'sim', model: 'gpt-realtime' });

    client.send({ type: 'simulator.fault', fault: { kind: 'stall_response' } });
    client.send({ type: 'response.create' });
    await events.until((list) => list[0]?.response_in_flight === true);
    client.close();
    await events.until((list) => list.length === 0);

    // The reader leaves: the stream lets go of its registry listener (and, with it, its timer).
    abort.abort();
    await vi.waitFor(() => expect(registry.listenerCount('changed')).toBe(0));
  });

  it('refreshes the counters between lifecycle changes', async () => {
    await start(50);
    const abort = new AbortController();
    const events = await openStream(abort.signal);
    const client = stack!.connect();
    await client.next('session.created');
    const before = await events.until((list) => list[0]?.state === 'relaying');
    // Forwarded frames are not lifecycle changes; only the refresh can show them.
    client.send({ type: 'input_audio_buffer.append', audio: 'AAAA' });
    client.send({ type: 'input_audio_buffer.append', audio: 'AAAA' });
    const after = await events.until((list) => (list[0]?.client_to_upstream as { frames: number } | undefined)?.frames === 2);
    expect(after[0]!.state).toBe('relaying');
    expect((before[0]!.client_to_upstream as { frames: number }).frames).toBe(0);
    abort.abort();
  });
});

type Listed = Array<{ state: string; response_in_flight: boolean; [field: string]: unknown }>;

/** Reads `event: sessions` messages; `until` resolves with the first list after the last match that matches. */
function sseReader(response: Response) {
  const lists: Listed[] = [];
  let cursor = 0;
  const waiters = new Set<() => void>();
  void (async () => {
    const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = '';
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        buffer += value;
        let end: number;
        while ((end = buffer.indexOf('\n\n')) !== -1) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          if (!block.split('\n').includes('event: sessions')) continue;
          const data = block.split('\n').filter((line) => line.startsWith('data: ')).map((line) => line.slice(6)).join('\n');
          lists.push((JSON.parse(data) as { sessions: Listed }).sessions);
          for (const wake of [...waiters]) wake();
        }
      }
    } catch {
      // Aborted by the test.
    }
  })();
  return {
    until(predicate: (list: Listed) => boolean, timeoutMs = 5_000): Promise<Listed> {
      return new Promise((resolve, reject) => {
        const check = () => {
          while (cursor < lists.length) {
            const list = lists[cursor++]!;
            if (predicate(list)) {
              waiters.delete(check);
              clearTimeout(timer);
              resolve(list);
              return;
            }
          }
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`no matching list in ${timeoutMs} ms; last: ${JSON.stringify(lists.at(-1))}`));
        }, timeoutMs);
        waiters.add(check);
        check();
      });
    },
  };
}
