import { join } from 'node:path';
import WebSocket from 'ws';

/** 20 ms of 24 kHz PCM16, base64: the payload of every audio frame in these tests. */
export const AUDIO_B64 = Buffer.from(Array.from({ length: 960 }, (_, i) => (i * 13) & 0xff)).toString('base64');

export interface Frame {
  data: Buffer;
  isBinary: boolean;
}

/**
 * A Realtime client that keeps every frame as received and never parses
 * one, so that whatever JSON.parse calls happen in the process are someone
 * else's.
 */
export class RawClient {
  readonly frames: Frame[] = [];
  private waiters: Array<() => void> = [];

  constructor(readonly socket: WebSocket) {
    socket.on('message', (data: Buffer, isBinary: boolean) => {
      this.frames.push({ data, isBinary });
      this.notify();
    });
    socket.on('close', () => this.notify());
    socket.on('error', () => this.notify());
  }

  static connect(url: string, key: string): RawClient {
    return new RawClient(new WebSocket(url, { headers: { Authorization: `Bearer ${key}` }, perMessageDeflate: false }));
  }

  /** Frames whose text contains `"type":"<type>"` (the simulator writes it without spaces unless told otherwise). */
  count(type: string): number {
    const needle = `"type":"${type}"`;
    return this.frames.filter((f) => f.data.includes(needle)).length;
  }

  /** Resolves when `predicate` holds; it is checked on every frame and on every notify(). */
  until(predicate: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what} (${this.frames.length} frames received)`)), timeoutMs);
      const check = () => {
        if (predicate()) {
          clearTimeout(timer);
          resolve();
        } else this.waiters.push(check);
      };
      check();
    });
  }

  /** Sends text frames as given, waiting until each reached the kernel. */
  async sendAll(frames: Array<string | Buffer>): Promise<void> {
    for (const frame of frames) {
      await new Promise<void>((resolve, reject) => this.socket.send(frame, { binary: false }, (error) => (error ? reject(error) : resolve())));
    }
  }

  close(): void {
    this.socket.terminate();
  }

  /** Re-checks what until() waits for: for conditions that change without a frame reaching this client. */
  notify(): void {
    for (const waiter of this.waiters.splice(0)) waiter();
  }
}

/** The key every hot-path test connects with: a balance no test can spend. */
export const HOTPATH_KEY = { name: 'hotpath', balanceNano: 1_000_000_000_000n };

/** The file a stack frame line points at, or null for node internals. */
function frameFile(line: string): string | null {
  const match = /\(?((?:file:\/\/)?\/[^():]+):\d+:\d+\)?$/.exec(line.trim());
  return match ? match[1]!.replace(/^file:\/\//, '') : null;
}

const SRC = `${join(import.meta.dirname, '..', '..', 'src')}/`;

/**
 * Who made a call, from the stack captured inside it: the first frame in the
 * project's own sources decides. `relay` is any module under src/ but the
 * simulator; frames in node_modules, node internals and tests are skipped.
 */
export function callerOf(stack: string | undefined): 'relay' | 'simulator' | 'other' {
  for (const line of (stack ?? '').split('\n').slice(1)) {
    const file = frameFile(line);
    if (file === null || !file.startsWith(SRC)) continue;
    return file.startsWith(`${SRC}simulator/`) ? 'simulator' : 'relay';
  }
  return 'other';
}

/** The top-level "type" of a JSON text, read with a pattern (never parsed). */
export function typeOf(text: string): string {
  return /"type"\s*:\s*"([^"]*)"/.exec(text.slice(0, 4096))?.[1] ?? '<none>';
}

export function appendFrame(i: number): string {
  return `{"type":"input_audio_buffer.append","event_id":"evt_${i}","audio":"${AUDIO_B64}"}`;
}
