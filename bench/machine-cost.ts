/**
 * What the session machine alone costs per session, without sockets, ledger
 * or TypeScript loader noise in the figure: CPU per whole lifecycle (start,
 * dial answered, relaying, the client leaves, sockets closed, settled,
 * ended) from process.cpuUsage(), and heap per idle session (machines held
 * in `relaying`, after GC). The ports answer at once and do nothing, so
 * everything measured is XState's and the machine's own work.
 *
 *   node --expose-gc --import tsx bench/machine-cost.ts [--sessions 20000] [--idle 5000] [--repeat 5]
 */
import { parseArgs } from 'node:util';
import { createActor, type Actor } from 'xstate';
import { hasEnded, sessionMachine, type SessionOutcome, type SessionPorts } from '../src/machines/session.js';
import type { SessionSummary } from '../src/server/ports.js';

const { values } = parseArgs({
  options: {
    sessions: { type: 'string', default: '20000' },
    idle: { type: 'string', default: '5000' },
    repeat: { type: 'string', default: '5' },
  },
});
const SESSIONS = Number(values.sessions);
const IDLE = Number(values.idle);
const REPEAT = Number(values.repeat);

const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with node --expose-gc');

const noop = () => undefined;
const disposer = () => noop;
const SUMMARY = { sessionId: 'bench' } as unknown as SessionSummary;
const TIMINGS = { connectTimeoutMs: 60_000, drainTimeoutMs: 60_000, maxSessionMs: 3_600_000 };

/** Ports as cheap as ports can be: the dial answers at once, a close finds its socket already closed. */
function inertPorts(): SessionPorts {
  const leg = {
    read: disposer,
    close: (_how: unknown, closed: (code: number | null) => void) => {
      closed(1000);
      return noop;
    },
  };
  return {
    client: { ...leg, stopForwarding: noop },
    upstream: { ...leg, dial: () => Promise.resolve(), cancelResponse: noop },
    keepAlive: disposer,
    settle: (_outcome: SessionOutcome) => Promise.resolve(SUMMARY),
  } as SessionPorts;
}

type SessionActor = Actor<typeof sessionMachine>;

function start(id: number): SessionActor {
  const actor = createActor(sessionMachine, { input: { sessionId: `sess_${id}`, ports: inertPorts(), timings: TIMINGS } });
  actor.start();
  return actor;
}

const relaying = (actor: SessionActor) => actor.getSnapshot().matches('relaying');

/** One whole lifecycle, as the server drives it: ended is the signal to stop the actor. */
function lifecycle(id: number): Promise<void> {
  return new Promise((resolve) => {
    const actor = start(id);
    const subscription = actor.subscribe((snapshot) => {
      if (relaying(actor) && snapshot.context.clientClosed === null) {
        actor.send({ type: 'CLIENT_CLOSED', code: 1000, reason: '' });
        return;
      }
      if (!hasEnded(snapshot)) return;
      subscription.unsubscribe();
      actor.stop();
      resolve();
    });
  });
}

async function cpuPerSession(): Promise<number> {
  const from = process.cpuUsage();
  const batch = 64;
  for (let done = 0; done < SESSIONS; done += batch) {
    await Promise.all(Array.from({ length: batch }, (_, i) => lifecycle(done + i)));
  }
  const used = process.cpuUsage(from);
  return (used.user + used.system) / 1000 / SESSIONS;
}

async function heapPerIdleSession(): Promise<number> {
  gc!();
  gc!();
  const before = process.memoryUsage().heapUsed;
  const actors = Array.from({ length: IDLE }, (_, i) => start(i));
  await new Promise((resolve) => setImmediate(resolve));
  if (!actors.every(relaying)) throw new Error('not every machine reached relaying');
  gc!();
  gc!();
  const after = process.memoryUsage().heapUsed;
  for (const actor of actors) actor.stop();
  return (after - before) / 1024 / IDLE;
}

await cpuPerSession(); // warm-up: JIT and inline caches
const cpu: number[] = [];
const heap: number[] = [];
for (let i = 0; i < REPEAT; i++) {
  cpu.push(await cpuPerSession());
  heap.push(await heapPerIdleSession());
  console.log(`#${i + 1}: ${cpu.at(-1)!.toFixed(4)} ms CPU per session lifecycle, ${heap.at(-1)!.toFixed(2)} KiB heap per idle machine`);
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
console.log(`median of ${REPEAT}: ${median(cpu).toFixed(4)} ms CPU per session lifecycle (${SESSIONS} sessions), ${median(heap).toFixed(2)} KiB heap per idle machine (${IDLE} in relaying)`);
