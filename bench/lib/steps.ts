/**
 * One step = fresh processes (simulator, relay variant, load generator), a
 * load, a warm-up, then a measured window. Nothing carries over between
 * steps, so each variant starts from the same state.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as delay } from 'node:timers/promises';
import type { LoadCounters } from '../children/loadgen.js';
import type { LedgerCounts, MemoryReport, RelayChildArgs, RelayReady } from '../children/relay.js';
import type { SimulatorChildArgs, SimulatorCounters } from '../children/simulator.js';
import { Histogram, percentiles, type Percentiles } from './histogram.js';
import { Child } from './ipc.js';
import { cpuPercent, machineBusyPercent, sampleMachine, sampleProcess, type MachineSample, type ProcSample } from './proc.js';
import type { AudioStep, CpuShare, FloodDirection, FloodStep, IdleStep, IsolationStep, SetupStep, Variant } from './results.js';

const SIMULATOR = new URL('../children/simulator.ts', import.meta.url);
/*
 * The relay process runs compiled JavaScript (tsconfig.bench.json, built by
 * buildRelayChild), as `npm start` runs the relay: a TypeScript loader in it
 * would add its own memory and CPU to what is measured.
 */
const RELAY = new URL('../../dist/bench-run/bench/children/relay.js', import.meta.url);

/** Compiles the relay process (incremental: seconds when nothing changed). */
export function buildRelayChild(): void {
  const root = fileURLToPath(new URL('../../', import.meta.url));
  const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
  execFileSync(process.execPath, [tsc, '-p', 'tsconfig.bench.json'], { cwd: root, stdio: 'inherit' });
}
const LOADGEN = new URL('../children/loadgen.ts', import.meta.url);
const PATH = '/v1/realtime?model=gpt-realtime';
/** 24 kHz PCM16 mono: 48,000 bytes a second, 960 per 20 ms frame. */
export const FRAME_MS = 20;
const FRAME_BYTES = 960;
const SATURATED_P99_US = 50_000;

export interface StepContext {
  /** A fresh, empty PostgreSQL schema for one relay + Postgres step (dropped with it), or null without a server. */
  scratchSchema: (() => Promise<{ url: string; drop(): Promise<void> }>) | null;
  profileDir: string | null;
  /** How long a step waits for other work on the machine to calm down before it starts. */
  quietWaitS: number;
  log(line: string): void;
  note(line: string): void;
}

/** Machine busy share (all cores, %) over `ms`. */
async function busyOver(ms: number): Promise<number> {
  const from = sampleMachine();
  await delay(ms);
  return machineBusyPercent(from, sampleMachine());
}

/**
 * Waits (up to `context.quietWaitS`) until nothing else keeps the machine
 * busy, since other processes' CPU shows up as our latency.
 */
async function awaitQuiet(context: StepContext, what: string): Promise<void> {
  const deadline = Date.now() + context.quietWaitS * 1000;
  let busy = await busyOver(context.quietWaitS > 5 ? 500 : 200);
  while (busy > 15 && Date.now() < deadline) busy = await busyOver(1000);
  if (busy > 15) context.note(`${what} started while other processes kept the machine ${busy.toFixed(0)} % busy`);
}

interface Stack {
  variant: Variant;
  sim: Child<{ url: string }>;
  relay: Child<RelayReady> | null;
  loadgen: Child<{ pid: number }>;
  url: string;
  headers: Record<string, string>;
  slowHeaders: Record<string, string> | null;
}

async function withStack<T>(
  context: StepContext,
  variant: Variant,
  simulator: SimulatorChildArgs,
  extra: { slowChargeMs?: number },
  run: (stack: Stack) => Promise<T>,
): Promise<T> {
  await awaitQuiet(context, `${variant} step`);
  const dataDir = mkdtempSync(join(tmpdir(), 'relay-bench-'));
  const started: Array<Child<unknown>> = [];
  let schema: { url: string; drop(): Promise<void> } | null = null;
  // The load generator needs nobody: it starts alongside the simulator.
  const loadgenStarting = Child.start<{ pid: number }>('loadgen', LOADGEN, {});
  const loadgenSettled = loadgenStarting.then((child) => void started.push(child), () => undefined);
  try {
    const sim = await Child.start<{ url: string }>('simulator', SIMULATOR, simulator);
    started.push(sim);
    let relay: Child<RelayReady> | null = null;
    if (variant !== 'direct') {
      if (variant === 'relay-pg') {
        if (!context.scratchSchema) throw new Error('relay + Postgres needs a PostgreSQL server');
        schema = await context.scratchSchema();
      }
      const args: RelayChildArgs = {
        variant,
        upstreamUrl: sim.ready.url,
        dataDir,
        ...(schema ? { databaseUrl: schema.url } : {}),
        ...(extra.slowChargeMs ? { slowChargeMs: extra.slowChargeMs } : {}),
      };
      // BENCH_RELAY_NODE_FLAGS (e.g. "--trace-gc") reaches the relay process only.
      const nodeFlags = ['--expose-gc', ...(process.env.BENCH_RELAY_NODE_FLAGS?.split(' ').filter(Boolean) ?? [])];
      // One folder per relay process: the loader's worker thread writes a profile of its own.
      if (context.profileDir) nodeFlags.push('--cpu-prof', `--cpu-prof-dir=${join(context.profileDir, `${variant}-${Date.now()}`)}`);
      relay = await Child.start<RelayReady>('relay', RELAY, args, { nodeFlags });
      started.push(relay);
    }
    const loadgen = await loadgenStarting;
    const target = relay ? relay.ready.url : sim.ready.url;
    const key = relay ? relay.ready.key : 'sk-bench';
    const headers: Record<string, string> = key ? { Authorization: `Bearer ${key}` } : {};
    const slowKey = relay?.ready.slowKey ?? null;
    return await run({ variant, sim, relay, loadgen, url: `${target}${PATH}`, headers, slowHeaders: slowKey ? { Authorization: `Bearer ${slowKey}` } : null });
  } finally {
    await loadgenSettled;
    await Promise.all(started.reverse().map((child) => child.stop()));
    await schema?.drop();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

interface Window {
  relay: ProcSample | null;
  sim: ProcSample;
  loadgen: ProcSample;
  machine: MachineSample;
  ledger: LedgerCounts | null;
}

async function openWindow(stack: Stack): Promise<Window> {
  const ledger = stack.relay ? await stack.relay.call<LedgerCounts>('ledger') : null;
  await Promise.all([stack.sim.call('reset'), stack.loadgen.call('reset')]);
  return {
    relay: stack.relay ? sampleProcess(stack.relay.pid) : null,
    sim: sampleProcess(stack.sim.pid),
    loadgen: sampleProcess(stack.loadgen.pid),
    machine: sampleMachine(),
    ledger,
  };
}

interface Closed {
  sim: SimulatorCounters;
  load: LoadCounters;
  cpu: CpuShare;
  relayCpuMs: number | null;
  relayRss: number | null;
  ledgerWrites: number | null;
  charges: number | null;
  seconds: number;
}

async function closeWindow(stack: Stack, opened: Window): Promise<Closed> {
  const relay = stack.relay ? sampleProcess(stack.relay.pid) : null;
  const sim = sampleProcess(stack.sim.pid);
  const loadgen = sampleProcess(stack.loadgen.pid);
  const machine = sampleMachine();
  const [simCounters, load, ledger] = await Promise.all([
    stack.sim.call<SimulatorCounters>('collect'),
    stack.loadgen.call<LoadCounters>('collect'),
    stack.relay ? stack.relay.call<LedgerCounts>('ledger') : Promise.resolve(null),
  ]);
  const cores = cpus().length;
  const writes = (counts: LedgerCounts) => counts.openSession + counts.recordCharge + counts.settleSession + counts.heartbeat;
  const cpu: CpuShare = {
    relay: relay && opened.relay ? cpuPercent(opened.relay, relay) : null,
    simulator: cpuPercent(opened.sim, sim),
    loadgen: cpuPercent(opened.loadgen, loadgen),
    machine: machineBusyPercent(opened.machine, machine),
    others: 0,
  };
  cpu.others = Math.max(0, cpu.machine * cores - (cpu.relay ?? 0) - cpu.simulator - cpu.loadgen);
  return {
    sim: simCounters,
    load,
    cpu,
    relayCpuMs: relay && opened.relay ? relay.cpuMs - opened.relay.cpuMs : null,
    relayRss: relay?.rssBytes ?? null,
    ledgerWrites: ledger && opened.ledger ? writes(ledger) - writes(opened.ledger) : null,
    charges: ledger && opened.ledger ? ledger.recordCharge - opened.ledger.recordCharge : null,
    seconds: load.windowMs / 1000,
  };
}

function relayMemory(stack: Stack): Promise<MemoryReport | null> {
  return stack.relay ? stack.relay.call<MemoryReport>('memory', true) : Promise.resolve(null);
}

function fullGcs(stack: Stack): Promise<number | null> {
  return stack.relay ? stack.relay.call<number>('fullGcs') : Promise.resolve(null);
}

/** Waits (bounded) until the relay has let go of every session, so that what it still holds is what it kept. */
async function drained(stack: Stack, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (stack.relay && Date.now() < deadline && (await stack.relay.call<number>('sessions')) > 0) await delay(200);
}

function pct(histogram: ReturnType<Histogram['toJSON']>): Percentiles {
  return percentiles(Histogram.fromJSON(histogram));
}

export interface AudioOptions {
  sessions: number;
  warmupS: number;
  windowS: number;
  /** Audio deltas per response: with 20 ms each, the response's length. */
  responseChunks: number;
  /** Per-session downstream delta rate a healthy step reaches (from the first step), for the saturation test. */
  referenceDeltaRate: number | null;
  slowSessions?: number;
  slowChargeMs?: number;
}

function audioSimulator(options: AudioOptions): SimulatorChildArgs {
  return { chunkIntervalMs: FRAME_MS, audioChunks: options.responseChunks, audioChunkBytes: FRAME_BYTES };
}

/** Audio-rate sessions: each appends every 20 ms while its responses stream back at the same rate. */
export async function audioStep(context: StepContext, variant: Variant, options: AudioOptions): Promise<AudioStep & { slowDoneGap: Percentiles; doneGapRaw: Percentiles; slowDeltas: number }> {
  return withStack(context, variant, audioSimulator(options), { slowChargeMs: options.slowChargeMs }, async (stack) => {
    const before = await relayMemory(stack);
    const connected = await stack.loadgen.call<{ connected: number; failed: number; ms: number; failures: string[] }>('connect', {
      url: stack.url,
      headers: stack.headers,
      count: options.sessions,
      concurrency: 64,
      ...(options.slowSessions && stack.slowHeaders ? { slow: { headers: stack.slowHeaders, count: options.slowSessions } } : {}),
    });
    context.log(`    ${connected.connected} sessions open in ${(connected.ms / 1000).toFixed(1)} s${connected.failed ? `, ${connected.failed} failed (${connected.failures[0]})` : ''}`);
    await stack.loadgen.call('startAudio', { intervalMs: FRAME_MS, responseStaggerMs: Math.min(3_000, options.responseChunks * FRAME_MS) });
    await delay(options.warmupS * 1000);
    const gcsBefore = await fullGcs(stack);
    const opened = await openWindow(stack);
    await delay(options.windowS * 1000);
    const closed = await closeWindow(stack, opened);
    const gcsAfter = await fullGcs(stack);
    await stack.loadgen.call('stopTraffic');
    const after = await relayMemory(stack);
    await stack.loadgen.call('closeAll');
    const { sim, load, seconds } = closed;
    const offered = options.sessions * (1000 / FRAME_MS);
    const framesForwarded = sim.framesIn + load.framesIn;
    const step: AudioStep = {
      variant,
      sessions: options.sessions,
      windowS: seconds,
      offeredAppendsPerS: offered,
      appendsPerS: sim.appends / seconds,
      deltasPerS: load.deltasIn / seconds,
      framesPerS: framesForwarded / seconds,
      mbPerSUp: sim.bytesIn / seconds / 1e6,
      mbPerSDown: load.bytesIn / seconds / 1e6,
      up: pct(sim.up),
      down: pct(load.down),
      doneGap: pct(load.doneGap),
      cpu: closed.cpu,
      cpuPerFrameUs: closed.relayCpuMs === null ? null : (closed.relayCpuMs * 1000) / Math.max(1, framesForwarded),
      rssMb: closed.relayRss === null ? null : closed.relayRss / 2 ** 20,
      heapPerSessionKb: before && after ? (after.heapUsed - before.heapUsed) / 1024 / Math.max(1, connected.connected) : null,
      fullGcs: gcsBefore === null || gcsAfter === null ? null : gcsAfter - gcsBefore,
      ledgerWritesPerS: closed.ledgerWrites === null ? null : closed.ledgerWrites / seconds,
      chargesPerS: closed.charges === null ? null : closed.charges / seconds,
      responsesPerS: load.responsesDone / seconds,
      errors: load.errors + connected.failed,
      errorSamples: [...connected.failures, ...load.errorSamples].slice(0, 5),
      saturated: false,
      saturation: [],
    };
    const reasons: string[] = [];
    if (connected.failed > 0) reasons.push(`${connected.failed} sessions could not open`);
    if (step.appendsPerS < 0.95 * offered) reasons.push(`upstream ${((step.appendsPerS / offered) * 100).toFixed(0)} % of offered`);
    const perSession = step.deltasPerS / Math.max(1, options.sessions);
    if (options.referenceDeltaRate !== null && perSession < 0.95 * options.referenceDeltaRate) {
      reasons.push(`downstream ${((perSession / options.referenceDeltaRate) * 100).toFixed(0)} % of the unloaded rate`);
    }
    if (step.down.p99 > SATURATED_P99_US || step.up.p99 > SATURATED_P99_US) reasons.push(`p99 > ${SATURATED_P99_US / 1000} ms`);
    step.saturation = reasons;
    step.saturated = reasons.length > 0;
    return { ...step, slowDoneGap: pct(load.slowDoneGap), doneGapRaw: step.doneGap, slowDeltas: load.slowDeltas };
  });
}

export async function isolationStep(context: StepContext, options: AudioOptions & { slowChargeMs: number }, baseline: Percentiles): Promise<IsolationStep> {
  const step = await audioStep(context, 'relay', { ...options, slowSessions: 1 });
  return {
    sessions: options.sessions,
    slowChargeMs: options.slowChargeMs,
    baseline,
    withSlow: step.down,
    othersDoneGap: step.doneGap,
    slowDoneGap: step.slowDoneGap,
    slowDeltas: step.slowDeltas,
  };
}

/** A few sessions as fast as the relay accepts: appends one way, then audio deltas the other. */
export async function floodStep(context: StepContext, variant: Variant, options: { sessions: number; warmupS: number; windowS: number }): Promise<FloodStep> {
  // Long responses, so that the turn between two of them (the charge, the next response.create) weighs little.
  const simulator: SimulatorChildArgs = { chunkIntervalMs: 0, audioChunks: 1000, audioChunkBytes: FRAME_BYTES };
  return withStack(context, variant, simulator, {}, async (stack) => {
    await stack.loadgen.call('connect', { url: stack.url, headers: stack.headers, count: options.sessions, concurrency: options.sessions });
    const measure = async (direction: 'up' | 'down'): Promise<FloodDirection & { errors: number }> => {
      await stack.loadgen.call('startFlood', direction);
      await delay(options.warmupS * 1000);
      const opened = await openWindow(stack);
      await delay(options.windowS * 1000);
      const closed = await closeWindow(stack, opened);
      await stack.loadgen.call('stopTraffic');
      const frames = direction === 'up' ? closed.sim.appends : closed.load.deltasIn;
      const bytes = direction === 'up' ? closed.sim.appendBytes : closed.load.deltaBytesIn;
      const forwarded = closed.sim.framesIn + closed.load.framesIn;
      return {
        framesPerS: frames / closed.seconds,
        mbPerS: bytes / closed.seconds / 1e6,
        latency: pct(direction === 'up' ? closed.sim.up : closed.load.down),
        cpu: closed.cpu,
        cpuPerFrameUs: closed.relayCpuMs === null ? null : (closed.relayCpuMs * 1000) / Math.max(1, forwarded),
        errors: closed.load.errors,
      };
    };
    const up = await measure('up');
    // What is still in flight drains before the other direction is measured.
    await delay(Math.min(1000, options.windowS * 300));
    const down = await measure('down');
    await stack.loadgen.call('closeAll');
    const { errors: upErrors, ...upResult } = up;
    const { errors: downErrors, ...downResult } = down;
    return { variant, sessions: options.sessions, up: upResult, down: downResult, errors: upErrors + downErrors };
  });
}

/** Sessions opened (to `session.created`) and closed back to back. */
export async function setupStep(context: StepContext, variant: Variant, options: { concurrency: number; seconds: number }): Promise<SetupStep> {
  const simulator: SimulatorChildArgs = { chunkIntervalMs: FRAME_MS, audioChunks: 5, audioChunkBytes: FRAME_BYTES };
  return withStack(context, variant, simulator, {}, async (stack) => {
    const opened = await openWindow(stack);
    const result = await stack.loadgen.call<{ completed: number; failed: number; failures: string[]; ms: number; perSecond: number; latency: ReturnType<Histogram['toJSON']> }>(
      'setupRate',
      { url: stack.url, headers: stack.headers, concurrency: options.concurrency, seconds: options.seconds },
      (options.seconds + 60) * 1000,
    );
    const closed = await closeWindow(stack, opened);
    const latency = Histogram.fromJSON(result.latency);
    return {
      variant,
      concurrency: options.concurrency,
      seconds: result.ms / 1000,
      perSecond: result.perSecond,
      completed: result.completed,
      failed: result.failed,
      failures: result.failures,
      latencyMs: { p50: latency.quantile(0.5) / 1000, p99: latency.quantile(0.99) / 1000 },
      cpu: closed.cpu,
      relayCpuMsPerSetup: closed.relayCpuMs === null ? null : closed.relayCpuMs / Math.max(1, result.completed),
      ledgerWritesPerS: closed.ledgerWrites === null ? null : closed.ledgerWrites / (result.ms / 1000),
    };
  });
}

/** Connected, silent sessions: what each one costs the relay in memory. */
export async function idleStep(context: StepContext, variant: Variant, options: { sessions: number }): Promise<IdleStep> {
  const simulator: SimulatorChildArgs = { chunkIntervalMs: FRAME_MS, audioChunks: 5, audioChunkBytes: FRAME_BYTES };
  return withStack(context, variant, simulator, {}, async (stack) => {
    if (!stack.relay) throw new Error('idle sessions are measured in a relay process');
    const before = (await relayMemory(stack))!;
    const connected = await stack.loadgen.call<{ connected: number; failed: number; ms: number; failures: string[] }>(
      'connect',
      { url: stack.url, headers: stack.headers, count: options.sessions, concurrency: 100 },
      600_000,
    );
    context.log(`    ${connected.connected} idle sessions open in ${(connected.ms / 1000).toFixed(1)} s${connected.failed ? `, ${connected.failed} failed (${connected.failures[0]})` : ''}`);
    await delay(1000);
    const after = (await relayMemory(stack))!;
    if (context.profileDir) context.log(`    heap snapshot: ${await stack.relay.call<string>('heapSnapshot', context.profileDir, 300_000)}`);
    await stack.loadgen.call('closeAll', null, 600_000);
    await drained(stack, 30_000);
    // Freed memory goes back to the allocator at once, to the system over the next second or so.
    await delay(1000);
    const closed = (await relayMemory(stack))!;
    const per = (bytes: number) => bytes / 1024 / Math.max(1, connected.connected);
    return {
      variant,
      sessions: options.sessions,
      connected: connected.connected,
      failed: connected.failed,
      connectMs: connected.ms,
      heapPerSessionKb: per(after.heapUsed - before.heapUsed),
      rssPerSessionKb: per(after.rss - before.rss),
      externalPerSessionKb: per(after.external - before.external),
      heapUsedMb: after.heapUsed / 2 ** 20,
      rssMb: after.rss / 2 ** 20,
      restRssMb: before.rss / 2 ** 20,
      closedRssMb: closed.rss / 2 ** 20,
      closedHeapUsedMb: closed.heapUsed / 2 ** 20,
    };
  });
}
