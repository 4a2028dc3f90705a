/**
 * What one session costs the relay against the bare pipe, in one short run:
 * memory per idle session (after GC) and the setup loop's rate and CPU per
 * setup. The same children as `npm run bench` (simulator, compiled relay
 * process, load generator), loopback only, bounded in sessions and seconds,
 * variants alternated so that a busy machine moves both sides.
 *
 *   npx tsx bench/per-session.ts [--idle 2000] [--seconds 4] [--concurrency 32] [--repeat 2] [--profile DIR]
 *
 * `--profile DIR` writes a CPU profile of each relay process (setup loop
 * included) and a heap snapshot with the idle sessions open.
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { setTimeout as delay } from 'node:timers/promises';
import type { MemoryReport, RelayChildArgs, RelayReady } from './children/relay.js';
import type { SimulatorChildArgs } from './children/simulator.js';
import { Child } from './lib/ipc.js';
import { sampleProcess } from './lib/proc.js';
import { buildRelayChild } from './lib/steps.js';

const { values } = parseArgs({
  options: {
    idle: { type: 'string', default: '2000' },
    seconds: { type: 'string', default: '4' },
    concurrency: { type: 'string', default: '32' },
    repeat: { type: 'string', default: '2' },
    profile: { type: 'string' },
    variants: { type: 'string', default: 'pipe,relay' },
  },
});
const IDLE = Math.min(10_000, Number(values.idle));
const SECONDS = Math.min(30, Number(values.seconds));
const CONCURRENCY = Number(values.concurrency);
const REPEAT = Math.min(5, Number(values.repeat));
const PROFILE = values.profile ? resolve(values.profile) : null;
const VARIANTS = values.variants.split(',') as Array<'pipe' | 'relay'>;
const PATH = '/v1/realtime?model=gpt-realtime';

const RELAY = new URL('../dist/bench-run/bench/children/relay.js', import.meta.url);
const SIMULATOR = new URL('./children/simulator.ts', import.meta.url);
const LOADGEN = new URL('./children/loadgen.ts', import.meta.url);

interface Run {
  restRssMb: number;
  heapKiB: number;
  rssKiB: number;
  setupsPerS: number;
  cpuMsPerSetup: number;
  failed: number;
}

async function once(variant: 'pipe' | 'relay'): Promise<Run> {
  const dataDir = mkdtempSync(join(tmpdir(), 'relay-per-session-'));
  const children: Array<Child<unknown>> = [];
  try {
    const simArgs: SimulatorChildArgs = { chunkIntervalMs: 20, audioChunks: 5, audioChunkBytes: 960 };
    const [sim, loadgen] = await Promise.all([
      Child.start<{ url: string }>('simulator', SIMULATOR, simArgs),
      Child.start<{ pid: number }>('loadgen', LOADGEN, {}),
    ]);
    children.push(sim, loadgen);
    const nodeFlags = ['--expose-gc'];
    if (PROFILE) nodeFlags.push('--cpu-prof', `--cpu-prof-dir=${join(PROFILE, `${variant}-${Date.now()}`)}`);
    const args: RelayChildArgs = { variant, upstreamUrl: sim.ready.url, dataDir };
    const relay = await Child.start<RelayReady>('relay', RELAY, args, { nodeFlags });
    children.push(relay);
    const url = `${relay.ready.url}${PATH}`;
    const headers: Record<string, string> = relay.ready.key ? { Authorization: `Bearer ${relay.ready.key}` } : {};
    await delay(500);
    const rest = await relay.call<MemoryReport>('memory', true);

    const connected = await loadgen.call<{ connected: number; failed: number }>('connect', { url, headers, count: IDLE, concurrency: 100 }, 300_000);
    await delay(500);
    const open = await relay.call<MemoryReport>('memory', true);
    if (PROFILE) await relay.call('heapSnapshot', PROFILE, 300_000);
    await loadgen.call('closeAll', null, 300_000);
    await delay(500);

    const from = sampleProcess(relay.pid);
    const setups = await loadgen.call<{ completed: number; failed: number; perSecond: number }>(
      'setupRate',
      { url, headers, concurrency: CONCURRENCY, seconds: SECONDS },
      (SECONDS + 60) * 1000,
    );
    const to = sampleProcess(relay.pid);
    const per = (bytes: number) => bytes / 1024 / Math.max(1, connected.connected);
    return {
      restRssMb: rest.rss / 2 ** 20,
      heapKiB: per(open.heapUsed - rest.heapUsed),
      rssKiB: per(open.rss - rest.rss),
      setupsPerS: setups.perSecond,
      cpuMsPerSetup: (to.cpuMs - from.cpuMs) / Math.max(1, setups.completed),
      failed: connected.failed + setups.failed,
    };
  } finally {
    await Promise.all(children.reverse().map((child) => child.stop()));
    rmSync(dataDir, { recursive: true, force: true });
  }
}

buildRelayChild();
if (PROFILE) mkdirSync(PROFILE, { recursive: true });
const runs: Record<string, Run[]> = { pipe: [], relay: [] };
for (let i = 0; i < REPEAT; i++) {
  for (const variant of VARIANTS) {
    const run = await once(variant);
    runs[variant]!.push(run);
    console.log(
      `${variant.padEnd(5)} #${i + 1}: rest RSS ${run.restRssMb.toFixed(0)} MB, heap/session ${run.heapKiB.toFixed(1)} KiB, RSS/session ${run.rssKiB.toFixed(1)} KiB, ` +
        `${run.setupsPerS.toFixed(0)} setups/s, ${run.cpuMsPerSetup.toFixed(3)} ms CPU/setup${run.failed ? `, ${run.failed} failed` : ''}`,
    );
  }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const pick = (variant: string, key: keyof Run) => median(runs[variant]!.map((run) => run[key]));
if (VARIANTS.length === 2) {
  console.log(`\nmedians (idle ${IDLE}, setups ${SECONDS} s at concurrency ${CONCURRENCY}, ${REPEAT} runs each):`);
  for (const [key, label, better] of [
    ['heapKiB', 'heap / idle session KiB', 'lower'],
    ['rssKiB', 'RSS / idle session KiB', 'lower'],
    ['setupsPerS', 'setups/s', 'higher'],
    ['cpuMsPerSetup', 'CPU ms / setup', 'lower'],
    ['restRssMb', 'RSS at rest MB', 'lower'],
  ] as const) {
    const pipe = pick('pipe', key);
    const relay = pick('relay', key);
    console.log(`  ${label.padEnd(24)} pipe ${pipe.toFixed(2).padStart(8)}  relay ${relay.toFixed(2).padStart(8)}  ratio ${(relay / pipe).toFixed(2)}× (${better} is better)`);
  }
}
