import { spawn, type ChildProcessByStdio } from 'node:child_process';
import { once } from 'node:events';
import type { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { DEMO_KEY_ON_TERMINAL } from '../helpers/relay-process.js';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/**
 * The environment a fresh shell would give `relay`: nothing of the test
 * runner's (no OPENAI_API_KEY, DATABASE_URL or REDIS_URL leaking in), plus `env`.
 */
export function cleanEnv(env: Record<string, string>): NodeJS.ProcessEnv {
  const base: NodeJS.ProcessEnv = { PATH: process.env.PATH };
  for (const name of ['HOME', 'TMPDIR', 'SYSTEMROOT']) if (process.env[name]) base[name] = process.env[name];
  return { ...base, ...env };
}

export interface Finished {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs `node <args>` from the repository root to its end, killed after `timeoutMs`. */
export async function runNode(args: string[], env: Record<string, string>, timeoutMs = 20_000): Promise<Finished> {
  const child = spawn(process.execPath, args, { cwd: ROOT, env: cleanEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const killer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  const [code, signal] = (await once(child, 'exit')) as [number | null, NodeJS.Signals | null];
  clearTimeout(killer);
  return { code, signal, stdout, stderr };
}

/** `relay <args>` as the `relay` bin runs it. */
export function runRelay(args: string[], env: Record<string, string> = {}): Promise<Finished> {
  return runNode(['bin/relay.mjs', ...args], env);
}

export interface LogLine {
  level: number;
  msg: string;
  [field: string]: unknown;
}

/** A long-running relay process whose JSON log lines are read as they come. */
export class RelayProcess {
  readonly lines: LogLine[] = [];
  stderr = '';
  private buffered = '';
  private waiters: Array<() => void> = [];
  private exited: { code: number | null; signal: NodeJS.Signals | null } | null = null;
  private readonly exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  constructor(readonly child: ChildProcessByStdio<null, Readable, Readable>) {
    child.stdout.on('data', (chunk: Buffer) => {
      this.buffered += chunk.toString();
      const parts = this.buffered.split('\n');
      this.buffered = parts.pop()!;
      for (const part of parts) if (part.trim()) this.lines.push(JSON.parse(part) as LogLine);
      this.wake();
    });
    child.stderr.on('data', (chunk: Buffer) => {
      this.stderr += chunk.toString();
      this.wake();
    });
    this.exit = once(child, 'exit').then(([code, signal]) => {
      this.exited = { code: code as number | null, signal: signal as NodeJS.Signals | null };
      this.wake();
      return this.exited;
    });
  }

  static start(args: string[], env: Record<string, string>): RelayProcess {
    return new RelayProcess(spawn(process.execPath, args, { cwd: ROOT, env: cleanEnv(env), stdio: ['ignore', 'pipe', 'pipe'] }));
  }

  private wake(): void {
    for (const wake of this.waiters.splice(0)) wake();
  }

  /** The first log line that `predicate` accepts; rejects if the process ends first or after `timeoutMs`. */
  line(predicate: (line: LogLine) => boolean, what: string, timeoutMs = 20_000): Promise<LogLine> {
    return this.until(() => this.lines.find(predicate), what, timeoutMs);
  }

  /** The demo key, read from the terminal (stderr) once the log says the relay created one. */
  async demoKey(timeoutMs = 20_000): Promise<string> {
    await this.line((l) => l.msg.startsWith('demo key created'), 'the demo key line', timeoutMs);
    return this.until(() => DEMO_KEY_ON_TERMINAL.exec(this.stderr)?.[1], 'the demo key on stderr', timeoutMs);
  }

  private until<T>(find: () => T | undefined, what: string, timeoutMs: number): Promise<T> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}; saw ${JSON.stringify(this.lines.map((l) => l.msg))}; stderr: ${this.stderr}`)), timeoutMs);
      const check = () => {
        const found = find();
        if (found !== undefined) {
          clearTimeout(timer);
          resolve(found);
        } else if (this.exited) {
          clearTimeout(timer);
          reject(new Error(`the relay exited (${JSON.stringify(this.exited)}) before ${what}; stderr: ${this.stderr}`));
        } else this.waiters.push(check);
      };
      check();
    });
  }

  /** Sends `signal` and resolves with how the process ended; SIGKILL after `timeoutMs`. */
  async stop(signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 10_000): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (!this.exited) this.child.kill(signal);
    const killer = setTimeout(() => this.child.kill('SIGKILL'), timeoutMs);
    const result = await this.exit;
    clearTimeout(killer);
    return result;
  }
}
