/**
 * The benchmark's process model: every measured party runs in its own child
 * process (so its CPU and memory are its own) and answers commands from the
 * orchestrator over the IPC channel.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

type Handler = (args: any) => unknown;

interface Request {
  id: number;
  cmd: string;
  args: unknown;
}

type Reply = { id: number; ok: true; result: unknown } | { id: number; ok: false; error: string };

/** In a child: announce `ready`, then answer commands until `exit`. */
export function serve(handlers: Record<string, Handler>, ready: unknown): void {
  const send = (message: unknown) => process.send?.(message);
  process.on('message', (message: Request) => {
    if (message.cmd === 'exit') {
      process.exit(0);
    }
    const handler = handlers[message.cmd];
    if (!handler) {
      send({ id: message.id, ok: false, error: `unknown command ${message.cmd}` } satisfies Reply);
      return;
    }
    Promise.resolve()
      .then(() => handler(message.args))
      .then(
        (result) => send({ id: message.id, ok: true, result: result ?? null } satisfies Reply),
        (error: unknown) => send({ id: message.id, ok: false, error: error instanceof Error ? `${error.message}\n${error.stack}` : String(error) } satisfies Reply),
      );
  });
  // The orchestrator going away ends the child.
  process.on('disconnect', () => process.exit(0));
  send({ ready });
}

export function childArgs<T>(): T {
  return JSON.parse(process.argv[2] ?? '{}') as T;
}

let openFileLimit: { soft: number; hard: number } | null = null;

/** The shell's open-file limits (children are started with the soft limit raised to the hard one). */
export function fileLimits(): { soft: number; hard: number } {
  if (openFileLimit) return openFileLimit;
  const read = (flag: string) => {
    const text = execFileSync('/bin/sh', ['-c', `ulimit ${flag}`], { encoding: 'utf8' }).trim();
    return text === 'unlimited' ? Number.POSITIVE_INFINITY : Number(text);
  };
  openFileLimit = { soft: read('-Sn'), hard: read('-Hn') };
  return openFileLimit;
}

export interface SpawnOptions {
  nodeFlags?: string[];
  env?: Record<string, string>;
  readyTimeoutMs?: number;
}

export class Child<Ready = unknown> {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve(value: unknown): void; reject(error: Error): void }>();
  private exited = false;
  readonly exit: Promise<number | null>;

  private constructor(
    readonly name: string,
    private readonly process: ChildProcess,
    readonly ready: Ready,
  ) {
    this.exit = new Promise((resolve) => {
      process.once('exit', (code) => {
        this.exited = true;
        for (const { reject } of this.pending.values()) reject(new Error(`${name} exited (${code})`));
        this.pending.clear();
        resolve(code);
      });
    });
    process.on('message', (message: Reply) => {
      const waiter = this.pending.get(message.id);
      if (!waiter) return;
      this.pending.delete(message.id);
      if (message.ok) waiter.resolve(message.result);
      else waiter.reject(new Error(`${name}: ${message.error}`));
    });
  }

  get pid(): number {
    return this.process.pid!;
  }

  /** Starts `script` (a .ts file, run through tsx, or compiled .js) with `args` and waits for its ready message. */
  static async start<R>(name: string, script: URL, args: unknown, options: SpawnOptions = {}): Promise<Child<R>> {
    const limits = fileLimits();
    const loader = script.pathname.endsWith('.ts') ? ['--import', 'tsx'] : [];
    const node = [...(options.nodeFlags ?? []), ...loader, fileURLToPath(script), JSON.stringify(args)];
    // The soft open-file limit is raised to the hard one where the shell allows it; `exec` keeps the pid.
    const raise = limits.soft < limits.hard ? `ulimit -Sn ${Number.isFinite(limits.hard) ? limits.hard : 'unlimited'} 2>/dev/null; ` : '';
    const quoted = [process.execPath, ...node].map((part) => `'${part.replaceAll("'", "'\\''")}'`).join(' ');
    const child = spawn('/bin/sh', ['-c', `${raise}exec ${quoted}`], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      env: { ...process.env, ...options.env },
    });
    const ready = await new Promise<R>((resolve, reject) => {
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new Error(`${name} did not start within ${options.readyTimeoutMs ?? 30_000} ms`));
      }, options.readyTimeoutMs ?? 30_000);
      const onMessage = (message: { ready?: R }) => {
        if (!message || !('ready' in message)) return;
        clearTimeout(timer);
        child.off('message', onMessage);
        child.off('exit', onExit);
        resolve(message.ready as R);
      };
      const onExit = (code: number | null) => {
        clearTimeout(timer);
        reject(new Error(`${name} exited (${code}) before it was ready`));
      };
      child.on('message', onMessage);
      child.once('exit', onExit);
    });
    return new Child<R>(name, child, ready);
  }

  call<T = unknown>(cmd: string, args: unknown = null, timeoutMs = 120_000): Promise<T> {
    if (this.exited) return Promise.reject(new Error(`${this.name} has exited`));
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`${this.name}: ${cmd} took longer than ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, {
        resolve: (value) => {
          clearTimeout(timer);
          resolve(value as T);
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      });
      this.process.send({ id, cmd, args } satisfies Request);
    });
  }

  /** Asks the child to exit; kills it if it has not within `graceMs`. */
  async stop(graceMs = 10_000): Promise<void> {
    if (this.exited) return;
    try {
      this.process.send({ id: 0, cmd: 'exit', args: null });
    } catch {
      // The channel is already gone.
    }
    const timer = setTimeout(() => this.process.kill('SIGKILL'), graceMs);
    await this.exit;
    clearTimeout(timer);
  }
}
