import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import { lineReader, parseLogLine, type LogLine } from './log-lines.js';
import { Arrivals } from './wait.js';

/**
 * The relay as an operator runs it, in a child process started from the
 * repository root with a clean environment:
 * - `spawnRelay`: a long-running relay (`node bin/relay.mjs start` unless
 *   told otherwise) on 127.0.0.1 and a free port, its JSON log lines parsed as
 *   they arrive, its URL read from them and its demo key read from stderr, the
 *   only place it is shown;
 * - `runRelay`: a `relay` command run to its end (`--help`, `keys create`…).
 */

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** How `relay start` shows the demo key on its terminal. */
export const DEMO_KEY_ON_TERMINAL = /^demo key \(shown once, not logged\): (rk_\S+)$/m;

/**
 * The environment a fresh shell would give `relay`: nothing of the test
 * runner's (no OPENAI_API_KEY, DATABASE_URL or REDIS_URL leaking in), plus `env`.
 */
export function cleanEnv(env: Record<string, string> = {}): NodeJS.ProcessEnv {
  const base: NodeJS.ProcessEnv = { PATH: process.env.PATH };
  for (const name of ['HOME', 'TMPDIR', 'SYSTEMROOT']) if (process.env[name]) base[name] = process.env[name];
  return { ...base, ...env };
}

export function tempDataDir(prefix = 'relay-process-'): { path: string; remove(): void } {
  const path = mkdtempSync(`${tmpdir()}/${prefix}`);
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface Finished extends Exit {
  stdout: string;
  stderr: string;
  /** How long the process ran. */
  ms: number;
}

export interface RunRelayOptions {
  /** Killed (SIGKILL) after this long. Default 20 s. */
  timeoutMs?: number;
  /** Run as this user and group id (a service account). */
  uid?: number;
}

/** `relay <args>` from the repository root, run to its end, with `env` on a clean environment. */
export async function runRelay(args: string[], env: Record<string, string> = {}, options: RunRelayOptions = {}): Promise<Finished> {
  const began = Date.now();
  const child = spawn(process.execPath, ['bin/relay.mjs', ...args], {
    cwd: ROOT,
    env: cleanEnv(env),
    stdio: ['ignore', 'pipe', 'pipe'],
    ...(options.uid === undefined ? {} : { uid: options.uid, gid: options.uid }),
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const killer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 20_000);
  const [code, signal] = (await once(child, 'exit')) as [number | null, NodeJS.Signals | null];
  clearTimeout(killer);
  return { code, signal, stdout, stderr, ms: Date.now() - began };
}

export interface RelayProcess {
  readonly child: ReturnType<typeof spawn>;
  /** ws://127.0.0.1:<port> */
  readonly url: string;
  /** http://127.0.0.1:<port> */
  readonly httpUrl: string;
  /** The demo key the relay printed once, or null if the ledger already had keys. */
  readonly demoKey: string | null;
  readonly dataDir: string;
  /** Every log line so far, parsed, oldest first. */
  readonly logs: LogLine[];
  /** Whatever the process wrote to stderr. */
  stderr(): string;
  /** `ws://…/v1/realtime?model=…` */
  realtimeUrl(model?: string): string;
  /** Resolves with the first log line (already written or still to come) that matches. */
  waitForLog(predicate: (line: LogLine) => boolean, what: string, timeoutMs?: number): Promise<LogLine>;
  signal(signal: NodeJS.Signals): void;
  /** Resolves when the process has exited; rejects after `timeoutMs`. */
  exited(timeoutMs?: number): Promise<Exit>;
  /** `signal`, then how the process ended; SIGKILL if it has not ended within `timeoutMs`. */
  stop(signal?: NodeJS.Signals, timeoutMs?: number): Promise<Exit>;
  /** SIGKILL unless it already exited; resolves once it is gone. */
  kill(): Promise<void>;
}

export interface SpawnRelayOptions {
  /** The ledger's folder (RELAY_DATA_DIR); the caller owns it (see tempDataDir). */
  dataDir: string;
  /** More settings, as environment variables, on top of HOST=127.0.0.1, PORT=0 and LOG_LEVEL=info. */
  env?: Record<string, string>;
  /** What node runs from the repository root. Default `bin/relay.mjs start`. */
  args?: string[];
  startupTimeoutMs?: number;
}

/** Starts the relay and resolves once it has finished starting (its `connect: …` line). */
export async function spawnRelay(options: SpawnRelayOptions): Promise<RelayProcess> {
  const env = cleanEnv({ HOST: '127.0.0.1', PORT: '0', RELAY_DATA_DIR: options.dataDir, LOG_LEVEL: 'info', ...options.env });
  const child = spawn(process.execPath, options.args ?? ['bin/relay.mjs', 'start'], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  const logs: LogLine[] = [];
  let stderr = '';
  let exit: Exit | null = null;
  const arrivals = new Arrivals(() => (exit ? `the relay exited (${JSON.stringify(exit)})` : null));
  const readStdout = lineReader((line) => logs.push(parseLogLine(line)));
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (chunk: string) => {
    readStdout(chunk);
    arrivals.check();
  });
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk: string) => {
    stderr += chunk;
    arrivals.check();
  });
  const exitPromise = new Promise<Exit>((resolveExit) => {
    child.once('exit', (code, signal) => {
      exit = { code, signal };
      resolveExit(exit);
      arrivals.check();
    });
  });

  const describe = () => `logs:\n${logs.map((l) => l.msg).join('\n')}\nstderr:\n${stderr}`;

  function waitForLog(predicate: (line: LogLine) => boolean, what: string, timeoutMs = 10_000): Promise<LogLine> {
    return arrivals.until(() => logs.find(predicate), what, timeoutMs, describe);
  }

  function exited(timeoutMs = 10_000): Promise<Exit> {
    let timer: NodeJS.Timeout | undefined;
    return Promise.race([
      exitPromise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`the relay did not exit within ${timeoutMs} ms; ${describe()}`)), timeoutMs);
      }),
    ]).finally(() => clearTimeout(timer));
  }

  async function kill(): Promise<void> {
    if (exit) return;
    child.kill('SIGKILL');
    await exitPromise;
  }

  async function stop(signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 10_000): Promise<Exit> {
    if (!exit) child.kill(signal);
    const killer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    try {
      return await exitPromise;
    } finally {
      clearTimeout(killer);
    }
  }

  try {
    const listening = await waitForLog((l) => l.msg?.startsWith('listening on ') === true, 'its listening line', options.startupTimeoutMs ?? 20_000);
    // "connect: …" is the last line of a start; the line saying a demo key was created, if any, came before it.
    await waitForLog((l) => l.msg?.startsWith('connect: ') === true, 'the end of its start-up', 5_000);
    const url = /^listening on (\S+)/.exec(listening.msg!)![1]!;
    const created = logs.some((l) => l.msg?.startsWith('demo key created') === true);
    const demo = created ? await arrivals.until(() => DEMO_KEY_ON_TERMINAL.exec(stderr) ?? undefined, 'the demo key on stderr', 5_000, describe) : null;
    return {
      child,
      url,
      httpUrl: url.replace(/^ws/, 'http'),
      demoKey: demo ? demo[1]! : null,
      dataDir: options.dataDir,
      logs,
      stderr: () => stderr,
      realtimeUrl: (model = 'gpt-realtime') => `${url}/v1/realtime?model=${encodeURIComponent(model)}`,
      waitForLog,
      signal: (signal) => {
        child.kill(signal);
      },
      exited,
      stop,
      kill,
    };
  } catch (error) {
    await kill();
    throw error;
  }
}

/** A port nobody listens on now, so that a relay can be started (and restarted) on it. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}
