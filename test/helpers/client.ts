import { connect as tcpConnect, type NetConnectOpts, type Socket } from 'node:net';
import WebSocket from 'ws';

export interface ReceivedEvent {
  type: string;
  [key: string]: unknown;
}

/** A Realtime client as a test sees it: every event it received, in order, and how it was closed. */
export class TestClient {
  readonly events: ReceivedEvent[] = [];
  readonly raw: Buffer[] = [];
  closed: { code: number; reason: string } | null = null;
  unexpected: { status: number; body: string } | null = null;
  private waiters: Array<() => void> = [];

  /**
   * `tcp`: the TCP connection under a ws:// client that connect() opened, for
   * a test that writes bytes no WebSocket library would send.
   */
  constructor(
    readonly socket: WebSocket,
    readonly tcp: Socket | null = null,
  ) {
    socket.on('message', (data: Buffer) => {
      this.raw.push(data);
      try {
        this.events.push(JSON.parse(data.toString()) as ReceivedEvent);
      } catch {
        this.events.push({ type: '<unparseable>', text: data.toString() });
      }
      this.wake();
    });
    socket.on('close', (code, reason) => {
      this.closed = { code, reason: reason.toString() };
      this.wake();
    });
    socket.on('error', () => this.wake());
    socket.on('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (chunk: Buffer) => (body += chunk.toString()));
      res.on('end', () => {
        this.unexpected = { status: res.statusCode ?? 0, body };
        this.closed = { code: 1006, reason: '' };
        this.wake();
      });
    });
  }

  static connect(url: string, options: { key?: string; protocols?: string[]; headers?: Record<string, string> } = {}): TestClient {
    const headers: Record<string, string> = { ...(options.headers ?? {}) };
    if (options.key !== undefined) headers.Authorization = `Bearer ${options.key}`;
    if (!url.startsWith('ws:')) return new TestClient(new WebSocket(url, options.protocols ?? [], { headers, perMessageDeflate: false }));
    let tcp: Socket | null = null;
    // The connection is opened here rather than inside ws so that the test holds it (http.request's createConnection).
    const socket = new WebSocket(url, options.protocols ?? [], { headers, perMessageDeflate: false, createConnection: (opts: unknown) => (tcp = tcpConnect(opts as NetConnectOpts)) });
    return new TestClient(socket, tcp);
  }

  private wake(): void {
    for (const waiter of this.waiters.splice(0)) waiter();
  }

  /** Resolves when `predicate` holds; rejects after `timeoutMs` with what was seen. */
  until(predicate: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
    return new Promise((resolve, reject) => {
      const check = () => {
        if (predicate()) {
          clearTimeout(timer);
          resolve();
          return true;
        }
        return false;
      };
      const timer = setTimeout(() => {
        reject(new Error(`timed out waiting for ${what}; saw ${this.events.map((e) => e.type).join(', ')}; closed=${JSON.stringify(this.closed)}`));
      }, timeoutMs);
      const wait = () => {
        if (!check()) this.waiters.push(wait);
      };
      wait();
    });
  }

  async next(type: string, timeoutMs = 5000, after = 0): Promise<ReceivedEvent> {
    await this.until(() => this.events.slice(after).some((e) => e.type === type), `"${type}"`, timeoutMs);
    return this.events.slice(after).find((e) => e.type === type)!;
  }

  count(type: string): number {
    return this.events.filter((e) => e.type === type).length;
  }

  async closedWith(timeoutMs = 5000): Promise<{ code: number; reason: string }> {
    await this.until(() => this.closed !== null, 'close', timeoutMs);
    return this.closed!;
  }

  send(event: object): void {
    this.socket.send(JSON.stringify(event));
  }

  close(code = 1000): void {
    this.socket.close(code);
  }
}
