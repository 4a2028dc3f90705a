import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';

/**
 * The relay as an operator runs it: `node bin/relay.mjs start` in a child
 * process, on 127.0.0.1 and a free port (PORT=0), with its SQLite ledger in
 * a temp folder. Its JSON log lines are parsed as they arrive and the URL is
 * read from them; the demo key is read from stderr, the only place it is shown.
 */

/** How `relay start` shows the demo key on its terminal. */
export const DEMO_KEY_ON_TERMINAL = /^demo key \(shown once, not logged\): (rk_\S+)$/m;

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const BIN = join(ROOT, 'bin/relay.mjs');

export interface LogLine {
  level: number;
  msg?: string;
  [field: string]: unknown;
}

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface RelayProcess {
  readonly child: ChildProcess;
  /** ws://127.0.0.1:<port> */
  readonly url: string;
  /** http://127.0.0.1:<port> */
  readonly httpUrl: string;
  /** The demo key the relay printed once, or null if the ledger already had keys. */
  readonly demoKey: string | null;
  readonly dataDir: string;
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
  /** SIGKILL unless it already exited; resolves once it is gone. */
  kill(): Promise<void>;
}

export interface SpawnRelayOptions {
  /** The ledger's folder; the caller owns it (see tempDataDir). */
  dataDir: string;
  /** More settings, as environment variables. */
  env?: Record<string, string>;
  startupTimeoutMs?: number;
}

export function tempDataDir(prefix = 'relay-process-'): { path: string; remove(): void } {
  const path = mkdtempSync(join(tmpdir(), prefix));
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}

export async function spawnRelay(options: SpawnRelayOptions): Promise<RelayProcess> {
  const env: NodeJS.ProcessEnv = {
    // Only what node needs: settings from the test's own environment must not leak in.
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    TMPDIR: process.env.TMPDIR,
    HOST: '127.0.0.1',
    PORT: '0',
    RELAY_DATA_DIR: options.dataDir,
    LOG_LEVEL: 'info',
    ...options.env,
  };
  const child = spawn(process.execPath, [BIN, 'start'], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  const logs: LogLine[] = [];
  let stderr = '';
  let exit: Exit | null = null;
  const waiters = new Set<() => void>();
  const wake = () => {
    for (const waiter of [...waiters]) waiter();
  };
  let partial = '';
  child.stdout!.setEncoding('utf8');
  child.stdout!.on('data', (chunk: string) => {
    partial += chunk;
    const lines = partial.split('\n');
    partial = lines.pop()!;
    for (const line of lines) {
      if (line.trim() === '') continue;
      try {
        logs.push(JSON.parse(line) as LogLine);
      } catch {
        logs.push({ level: 0, msg: line });
      }
    }
    wake();
  });
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (chunk: string) => {
    stderr += chunk;
    wake();
  });
  const exitPromise = new Promise<Exit>((resolveExit) => {
    child.once('exit', (code, signal) => {
      exit = { code, signal };
      resolveExit(exit);
      wake();
    });
  });

  const describe = () => `exit=${JSON.stringify(exit)}; logs:\n${logs.map((l) => l.msg).join('\n')}\nstderr:\n${stderr}`;

  function waitForLog(predicate: (line: LogLine) => boolean, what: string, timeoutMs = 10_000): Promise<LogLine> {
    return waitFor(() => logs.find(predicate), what, timeoutMs);
  }

  function waitFor<T>(find: () => T | undefined, what: string, timeoutMs: number): Promise<T> {
    return new Promise((resolveLine, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const check = () => {
        const found = find();
        if (found !== undefined || exit) {
          waiters.delete(check);
          clearTimeout(timer);
          if (found !== undefined) resolveLine(found);
          else reject(new Error(`the relay exited before showing ${what}; ${describe()}`));
        }
      };
      timer = setTimeout(() => {
        waiters.delete(check);
        reject(new Error(`timed out waiting for ${what}; ${describe()}`));
      }, timeoutMs);
      waiters.add(check);
      check();
    });
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

  try {
    const listening = await waitForLog((l) => l.msg?.startsWith('listening on ') === true, 'its listening line', options.startupTimeoutMs ?? 20_000);
    // "connect: …" is the last line of a start; the line saying a demo key was created, if any, came before it.
    await waitForLog((l) => l.msg?.startsWith('connect: ') === true, 'the end of its start-up', 5_000);
    const url = /^listening on (\S+)/.exec(listening.msg!)![1]!;
    const created = logs.some((l) => l.msg?.startsWith('demo key created') === true);
    const demo = created ? await waitFor(() => DEMO_KEY_ON_TERMINAL.exec(stderr) ?? undefined, 'the demo key on stderr', 5_000) : null;
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
      kill,
    };
  } catch (error) {
    await kill();
    throw error;
  }
}

export interface LedgerSessionRow {
  id: string;
  status: string;
  endReason: string | null;
  spendNano: bigint;
  settlement: { status: string; endReason: string; chargeCount: number; totalNano: bigint; summary: Record<string, unknown> } | null;
}

/** The sessions in a relay's SQLite ledger with their settlements, read-only, oldest first. */
export function ledgerSessions(dataDir: string): LedgerSessionRow[] {
  const db = new Database(join(dataDir, 'ledger.db'), { readonly: true, fileMustExist: true });
  try {
    db.defaultSafeIntegers(true);
    const rows = db
      .prepare(
        `SELECT s.id, s.status, s.end_reason, s.spend_nano, t.status AS t_status, t.end_reason AS t_end_reason, t.charge_count, t.total_nano, t.summary_json
         FROM sessions s LEFT JOIN settlements t ON t.session_id = s.id ORDER BY s.started_at, s.id`,
      )
      .all() as Array<{
      id: string;
      status: string;
      end_reason: string | null;
      spend_nano: bigint;
      t_status: string | null;
      t_end_reason: string | null;
      charge_count: bigint | null;
      total_nano: bigint | null;
      summary_json: string | null;
    }>;
    return rows.map((r) => ({
      id: r.id,
      status: r.status,
      endReason: r.end_reason,
      spendNano: r.spend_nano,
      settlement:
        r.t_status === null
          ? null
          : {
              status: r.t_status,
              endReason: r.t_end_reason!,
              chargeCount: Number(r.charge_count),
              totalNano: r.total_nano!,
              summary: JSON.parse(r.summary_json!) as Record<string, unknown>,
            },
    }));
  } finally {
    db.close();
  }
}
