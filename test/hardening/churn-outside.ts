/**
 * The world outside the relay during a churn run, in a worker thread of its
 * own so that it does not share the relay's event loop: the upstream
 * simulator and the clients, each client following one end path.
 */
import { parentPort } from 'node:worker_threads';
import WebSocket from 'ws';
import { startSimulator } from '../../src/simulator/index.js';

export type Path = 'client_close' | 'upstream_close' | 'error' | 'cancel' | 'quota' | 'idle';

export type ToOutside =
  | { type: 'run'; urls: { busy: string; idle: string }; plan: Array<{ path: Path; key: string; keyId: string }>; concurrency: number; deadline: number }
  | { type: 'close' };

export type FromOutside =
  | { type: 'ready'; simulatorUrl: string }
  | { type: 'cancel'; keyId: string }
  | { type: 'done'; completed: number; attempted: Record<string, number>; failures: string[]; failed: number; stoppedByTime: boolean; simulatorSockets: number }
  | { type: 'closed' };

/** The close code each path must end with. */
const CLOSE_CODE: Record<Path, number> = { client_close: 1000, upstream_close: 4001, error: 1007, cancel: 1000, quota: 1008, idle: 1000 };

/** Idle sessions open at once (they cost the relay a socket pair and a timer each, no work). */
const IDLE_LANE = 100;

const port = parentPort!;
const post = (message: FromOutside) => port.postMessage(message);
const sim = await startSimulator({ chunkIntervalMs: 0, textDeltas: 3 });

function runSession(url: string, session: { path: Path; key: string; keyId: string }): Promise<void> {
  const { path } = session;
  return new Promise<void>((resolve, reject) => {
    const socket = new WebSocket(url, { headers: { Authorization: `Bearer ${session.key}` }, perMessageDeflate: false });
    const timer = setTimeout(() => {
      socket.terminate();
      reject(new Error(`${path}: no end within 15 s`));
    }, 15_000);
    socket.on('error', () => undefined);
    socket.on('unexpected-response', (_req, res) => {
      clearTimeout(timer);
      socket.terminate();
      reject(new Error(`${path}: refused with ${res.statusCode}`));
    });
    socket.on('message', (data: Buffer) => {
      const text = data.toString();
      if (text.includes('"type":"session.created"')) {
        if (path === 'client_close' || path === 'quota') socket.send('{"type":"response.create","response":{"output_modalities":["text"]}}');
        else if (path === 'upstream_close') socket.send('{"type":"simulator.fault","fault":{"kind":"close","code":4001,"reason":"bye"}}');
        else if (path === 'error') socket.send(Buffer.from('binary'), { binary: true });
        else if (path === 'cancel') post({ type: 'cancel', keyId: session.keyId });
      } else if (path === 'client_close' && text.includes('"type":"response.done"')) {
        socket.close(1000);
      }
    });
    socket.on('close', (code) => {
      clearTimeout(timer);
      if (code === CLOSE_CODE[path]) resolve();
      else reject(new Error(`${path}: closed with ${code}`));
    });
  });
}

async function run(message: Extract<ToOutside, { type: 'run' }>): Promise<void> {
  const attempted: Record<string, number> = {};
  const failures: string[] = [];
  let failed = 0;
  let completed = 0;
  let stoppedByTime = false;
  // Idle sessions only wait for the relay's idle timeout: they run in a lane of their own, so they take no busy session's turn.
  const lane = (sessions: typeof message.plan) => {
    let next = 0;
    return async function laneWorker(): Promise<void> {
      while (next < sessions.length) {
        if (Date.now() > message.deadline) {
          stoppedByTime = true;
          return;
        }
        const session = sessions[next++]!;
        attempted[session.path] = (attempted[session.path] ?? 0) + 1;
        try {
          await runSession(session.path === 'idle' ? message.urls.idle : message.urls.busy, session);
          completed++;
        } catch (error) {
          failed++;
          if (failures.length < 20) failures.push((error as Error).message);
        }
      }
    };
  };
  const busy = lane(message.plan.filter((s) => s.path !== 'idle'));
  const idle = lane(message.plan.filter((s) => s.path === 'idle'));
  await Promise.all([...Array.from({ length: message.concurrency }, busy), ...Array.from({ length: IDLE_LANE }, idle)]);
  // The relay closes its upstream sockets last: wait until the simulator has seen every one go.
  const deadline = Date.now() + 10_000;
  while (sim.socketCount > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
  post({ type: 'done', completed, attempted, failures, failed, stoppedByTime, simulatorSockets: sim.socketCount });
}

port.on('message', (message: ToOutside) => {
  if (message.type === 'run') void run(message);
  else {
    void sim.close().then(() => {
      post({ type: 'closed' });
      port.close();
    });
  }
});
post({ type: 'ready', simulatorUrl: sim.url });
