/**
 * The load generator: Realtime clients in one process, the same for every
 * variant. It offers audio at a fixed rate, floods, opens and closes
 * sessions, or holds idle ones, and reads the send stamp of every audio
 * delta it receives (upstream → client latency).
 */
import WebSocket from 'ws';
import { scanEventType } from '../../src/protocol/frame-type.js';
import { Histogram } from '../lib/histogram.js';
import { serve } from '../lib/ipc.js';
import { hasLeadingType, leadingType, nowNs, readStamp, stamp } from '../lib/stamp.js';

const AUDIO_DELTA = leadingType('response.output_audio.delta');
const RESPONSE_CREATE = '{"type":"response.create"}';
/** 20 ms of 24 kHz PCM16: 960 bytes, a quiet sawtooth so the base64 is not all one letter. */
const AUDIO = Buffer.from(Array.from({ length: 960 }, (_, i) => (i * 7) & 0xff)).toString('base64');
const APPEND_HEAD = '{"type":"input_audio_buffer.append","event_id":"';
const APPEND_TAIL = `","audio":"${AUDIO}"}`;
/** A client whose socket holds more than this unsent skips the append (audio is real time). */
const CLIENT_BACKLOG_LIMIT = 1024 * 1024;
const FLOOD_BATCH = 32;
const TICK_MS = 2;

function appendFrame(): string {
  return APPEND_HEAD + stamp() + APPEND_TAIL;
}

export interface ConnectRequest {
  url: string;
  headers: Record<string, string>;
  count: number;
  concurrency: number;
  /** Sessions whose charges the relay writes slowly (measured apart from the rest). */
  slow?: { headers: Record<string, string>; count: number };
}

export interface LoadCounters {
  windowMs: number;
  sessions: number;
  appendsScheduled: number;
  appendsSent: number;
  appendsSkipped: number;
  framesOut: number;
  bytesOut: number;
  framesIn: number;
  bytesIn: number;
  deltasIn: number;
  deltaBytesIn: number;
  responsesDone: number;
  errors: number;
  unexpectedCloses: number;
  errorSamples: string[];
  down: ReturnType<Histogram['toJSON']>;
  doneGap: ReturnType<Histogram['toJSON']>;
  slowDoneGap: ReturnType<Histogram['toJSON']>;
  slowDeltas: number;
}

const counters = {
  appendsScheduled: 0,
  appendsSent: 0,
  appendsSkipped: 0,
  framesOut: 0,
  bytesOut: 0,
  framesIn: 0,
  bytesIn: 0,
  deltasIn: 0,
  deltaBytesIn: 0,
  responsesDone: 0,
  errors: 0,
  unexpectedCloses: 0,
  slowDeltas: 0,
};
const errorSamples: string[] = [];
const down = new Histogram();
const doneGap = new Histogram();
const slowDoneGap = new Histogram();
let windowStart = performance.now();

function noteError(text: string): void {
  counters.errors++;
  if (errorSamples.length < 5) errorSamples.push(text.slice(0, 300));
}

type Mode = 'idle' | 'audio' | 'flood-up' | 'flood-down';

class BenchSession {
  readonly ws: WebSocket;
  mode: Mode = 'idle';
  closing = false;
  /** Offset of this session's appends within the interval, so sessions do not send in lockstep. */
  phaseMs = 0;
  appendsDue = 0;
  private lastDeltaNs = 0;
  private readonly created: Promise<void>;
  // Each batch yields to the event loop first: a socket that takes every write at once calls back
  // on the next tick, and a chain of those would starve I/O (the orchestrator's commands included).
  private readonly pumpUp = () => setImmediate(() => this.floodUp());

  constructor(url: string, headers: Record<string, string>, readonly slow: boolean) {
    this.ws = new WebSocket(url, { headers, perMessageDeflate: false, maxPayload: 256 * 1024 * 1024 });
    this.created = new Promise<void>((resolve, reject) => {
      let opened = false;
      this.ws.on('message', (data: Buffer) => {
        if (!opened) {
          opened = true;
          if (scanEventType(data) === 'session.created') resolve();
          else reject(new Error(`first event was not session.created: ${data.toString('utf8', 0, 300)}`));
          return;
        }
        this.onFrame(data);
      });
      this.ws.on('unexpected-response', (_request, response) => {
        reject(new Error(`HTTP ${response.statusCode}`));
        this.ws.terminate();
      });
      this.ws.on('error', (error) => reject(error));
      this.ws.on('close', (code, reason) => {
        if (!opened) reject(new Error(`closed ${code} ${reason.toString()}`));
        else if (!this.closing) {
          counters.unexpectedCloses++;
          noteError(`closed ${code} ${reason.toString()}`);
        }
      });
    });
    this.created.catch(() => undefined);
  }

  ready(timeoutMs: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    return Promise.race([
      this.created,
      new Promise<void>((_, reject) => {
        timer = setTimeout(() => reject(new Error('no session.created in time')), timeoutMs);
      }),
    ]).finally(() => clearTimeout(timer));
  }

  private onFrame(data: Buffer): void {
    counters.framesIn++;
    counters.bytesIn += data.length;
    if (hasLeadingType(data, AUDIO_DELTA)) {
      const now = nowNs();
      this.lastDeltaNs = now;
      counters.deltasIn++;
      counters.deltaBytesIn += data.length;
      if (this.slow) {
        counters.slowDeltas++;
        return;
      }
      const sent = readStamp(data);
      if (sent > 0) down.record((now - sent) / 1000);
      return;
    }
    const type = scanEventType(data);
    if (type === 'response.done') {
      counters.responsesDone++;
      if (this.lastDeltaNs > 0) (this.slow ? slowDoneGap : doneGap).record((nowNs() - this.lastDeltaNs) / 1000);
      this.lastDeltaNs = 0;
      if (this.mode === 'audio' || this.mode === 'flood-down') this.send(RESPONSE_CREATE);
    } else if (type === 'error') {
      noteError(data.toString('utf8', 0, 300));
    }
  }

  send(frame: string, callback?: () => void): void {
    if (this.ws.readyState !== WebSocket.OPEN) return;
    counters.framesOut++;
    counters.bytesOut += frame.length;
    this.ws.send(frame, callback);
  }

  /** One due append, unless the socket is backed up. */
  append(): void {
    counters.appendsScheduled++;
    if (this.ws.bufferedAmount > CLIENT_BACKLOG_LIMIT) {
      counters.appendsSkipped++;
      return;
    }
    counters.appendsSent++;
    this.send(appendFrame());
  }

  startFloodUp(): void {
    this.mode = 'flood-up';
    this.floodUp();
  }

  /** As fast as the relay takes them: a batch, then wait until the last one reached the kernel. */
  private floodUp(): void {
    if (this.mode !== 'flood-up' || this.ws.readyState !== WebSocket.OPEN) return;
    for (let i = 1; i < FLOOD_BATCH; i++) {
      counters.appendsSent++;
      this.send(appendFrame());
    }
    counters.appendsSent++;
    this.send(appendFrame(), this.pumpUp);
  }

  close(timeoutMs: number): Promise<void> {
    this.closing = true;
    this.mode = 'idle';
    const ws = this.ws;
    if (ws.readyState === WebSocket.CLOSED) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        ws.terminate();
        resolve();
      }, timeoutMs);
      ws.once('close', () => {
        clearTimeout(timer);
        resolve();
      });
      if (ws.readyState === WebSocket.OPEN) ws.close(1000);
      else ws.terminate();
    });
  }
}

let sessions: BenchSession[] = [];
let ticker: NodeJS.Timeout | undefined;

async function inParallel<T>(items: T[], concurrency: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await work(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker));
}

async function connect(request: ConnectRequest): Promise<{ connected: number; failed: number; ms: number; failures: string[] }> {
  const began = performance.now();
  const plan: Array<{ headers: Record<string, string>; slow: boolean }> = [];
  for (let i = 0; i < (request.slow?.count ?? 0); i++) plan.push({ headers: request.slow!.headers, slow: true });
  for (let i = 0; i < request.count; i++) plan.push({ headers: request.headers, slow: false });
  let failed = 0;
  const failures: string[] = [];
  await inParallel(plan, request.concurrency, async ({ headers, slow }) => {
    const session = new BenchSession(request.url, headers, slow);
    try {
      await session.ready(30_000);
      sessions.push(session);
    } catch (error) {
      failed++;
      if (failures.length < 5) failures.push((error as Error).message);
      session.ws.terminate();
    }
  });
  return { connected: sessions.length, failed, ms: performance.now() - began, failures };
}

/** Appends every `intervalMs` per session, and one response after another. */
function startAudio(options: { intervalMs: number; responseStaggerMs: number }): void {
  const started = performance.now();
  for (const session of sessions) {
    session.mode = 'audio';
    session.phaseMs = Math.random() * options.intervalMs;
    session.appendsDue = 0;
    // Responses start spread out, so they do not all end (and get charged) at once.
    const first = setTimeout(() => session.send(RESPONSE_CREATE), Math.random() * options.responseStaggerMs);
    first.unref();
  }
  const tick = () => {
    const elapsed = performance.now() - started;
    for (const session of sessions) {
      if (session.mode !== 'audio') continue;
      const due = Math.floor((elapsed - session.phaseMs) / options.intervalMs) + 1;
      while (session.appendsDue < due) {
        session.appendsDue++;
        session.append();
      }
    }
    ticker = setTimeout(tick, TICK_MS);
  };
  tick();
}

function startFlood(direction: 'up' | 'down'): void {
  for (const session of sessions) {
    if (direction === 'up') session.startFloodUp();
    else {
      session.mode = 'flood-down';
      session.send(RESPONSE_CREATE);
    }
  }
}

function stopTraffic(): void {
  clearTimeout(ticker);
  ticker = undefined;
  for (const session of sessions) session.mode = 'idle';
}

async function closeAll(): Promise<{ ms: number }> {
  const began = performance.now();
  stopTraffic();
  const closing = sessions;
  sessions = [];
  await inParallel(closing, 200, (session) => session.close(10_000));
  return { ms: performance.now() - began };
}

function reset(): void {
  for (const key of Object.keys(counters) as Array<keyof typeof counters>) counters[key] = 0;
  errorSamples.length = 0;
  down.reset();
  doneGap.reset();
  slowDoneGap.reset();
  windowStart = performance.now();
}

function collect(): LoadCounters {
  return {
    ...counters,
    windowMs: performance.now() - windowStart,
    sessions: sessions.length,
    errorSamples: [...errorSamples],
    down: down.toJSON(),
    doneGap: doneGap.toJSON(),
    slowDoneGap: slowDoneGap.toJSON(),
  };
}

/** Sessions opened and closed back to back by `concurrency` workers for `seconds`. */
async function setupRate(request: { url: string; headers: Record<string, string>; concurrency: number; seconds: number }) {
  const latency = new Histogram();
  const began = performance.now();
  const deadline = began + request.seconds * 1000;
  let completed = 0;
  let failed = 0;
  const failures: string[] = [];
  const worker = async () => {
    while (performance.now() < deadline) {
      const t0 = performance.now();
      const session = new BenchSession(request.url, request.headers, false);
      try {
        await session.ready(10_000);
        latency.record((performance.now() - t0) * 1000);
        completed++;
      } catch (error) {
        failed++;
        if (failures.length < 5) failures.push((error as Error).message);
      }
      await session.close(5_000);
    }
  };
  await Promise.all(Array.from({ length: request.concurrency }, worker));
  const ms = performance.now() - began;
  return { completed, failed, failures, ms, perSecond: completed / (ms / 1000), latency: latency.toJSON() };
}

serve(
  {
    connect,
    startAudio,
    startFlood,
    stopTraffic,
    closeAll,
    reset,
    collect,
    setupRate,
  },
  { pid: process.pid },
);
