import { randomBytes } from 'node:crypto';
import { connect, type Socket } from 'node:net';

/**
 * A WebSocket client written straight onto a TCP socket, so a test can send
 * what no well-behaved library would: invalid UTF-8 in a text frame, frames
 * bigger than the server allows, headers trickled byte by byte.
 */
export const OPCODE = { text: 0x1, binary: 0x2, close: 0x8, ping: 0x9, pong: 0xa } as const;

/** One masked client frame. */
export function clientFrame(opcode: number, payload: Buffer, fin = true): Buffer {
  const mask = randomBytes(4);
  const length = payload.length;
  const header = length < 126 ? Buffer.alloc(2) : length < 65_536 ? Buffer.alloc(4) : Buffer.alloc(10);
  header[0] = (fin ? 0x80 : 0) | opcode;
  if (length < 126) header[1] = 0x80 | length;
  else if (length < 65_536) {
    header[1] = 0x80 | 126;
    header.writeUInt16BE(length, 2);
  } else {
    header[1] = 0x80 | 127;
    header.writeBigUInt64BE(BigInt(length), 2);
  }
  const masked = Buffer.alloc(length);
  for (let i = 0; i < length; i++) masked[i] = payload[i]! ^ mask[i & 3]!;
  return Buffer.concat([header, mask, masked]);
}

export interface ServerFrame {
  opcode: number;
  payload: Buffer;
}

export interface RawConnection {
  socket: Socket;
  /** The HTTP response head to the upgrade. */
  head: string;
  status: number;
  frames: ServerFrame[];
  /** Text frames parsed as JSON. */
  events(): Array<{ type: string; [k: string]: unknown }>;
  /** The close frame's code, once one arrived. */
  closeCode(): number | null;
  send(opcode: number, payload: Buffer | string): void;
  /** Writes bytes as they are (several frames at once, or a malformed one). */
  write(bytes: Buffer): void;
  /** Resolves when `predicate` holds (checked as data arrives and at the end); rejects after `timeoutMs`. */
  until(predicate: () => boolean, what: string, timeoutMs?: number): Promise<void>;
  readonly isEnded: boolean;
  /** Resolves when the TCP connection has ended. */
  ended: Promise<void>;
}

export function rawUpgradeRequest(path: string, host: string, headers: Record<string, string>): string {
  const lines = [
    `GET ${path} HTTP/1.1`,
    `Host: ${host}`,
    'Upgrade: websocket',
    'Connection: Upgrade',
    `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}`,
    'Sec-WebSocket-Version: 13',
    ...Object.entries(headers).map(([name, value]) => `${name}: ${value}`),
  ];
  return `${lines.join('\r\n')}\r\n\r\n`;
}

export interface RawConnectOptions {
  /** Answer each ping as it is read, as a live client does (a paused socket reads nothing, so answers nothing). */
  answerPings?: boolean;
}

/** Opens a WebSocket by hand; resolves once the server answered the upgrade. */
export function rawConnect(port: number, path: string, headers: Record<string, string>, options: RawConnectOptions = {}): Promise<RawConnection> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let buffer: Buffer = Buffer.alloc(0);
    let headDone = false;
    let isEnded = false;
    const frames: ServerFrame[] = [];
    const waiters = new Set<() => void>();
    const wake = () => {
      for (const waiter of [...waiters]) waiter();
    };
    const ended = new Promise<void>((done) =>
      socket.once('close', () => {
        isEnded = true;
        wake();
        done();
      }),
    );
    socket.on('error', () => undefined);
    const connection: RawConnection = {
      socket,
      head: '',
      status: 0,
      frames,
      events: () => frames.filter((f) => f.opcode === OPCODE.text).map((f) => JSON.parse(f.payload.toString()) as { type: string }),
      closeCode: () => {
        const close = frames.find((f) => f.opcode === OPCODE.close);
        return close && close.payload.length >= 2 ? close.payload.readUInt16BE(0) : null;
      },
      send: (opcode, payload) => {
        if (!socket.destroyed) socket.write(clientFrame(opcode, typeof payload === 'string' ? Buffer.from(payload) : payload));
      },
      write: (bytes) => {
        if (!socket.destroyed) socket.write(bytes);
      },
      until: (predicate, what, timeoutMs = 5_000) =>
        new Promise<void>((done, fail) => {
          const check = () => {
            if (!predicate()) return;
            waiters.delete(check);
            clearTimeout(timer);
            done();
          };
          const timer = setTimeout(() => {
            waiters.delete(check);
            const seen = frames.map((f) => (f.opcode === OPCODE.text ? (JSON.parse(f.payload.toString()) as { type: string }).type : `opcode ${f.opcode}`));
            fail(new Error(`timed out waiting for ${what}; saw ${seen.slice(-20).join(', ')}; ended=${isEnded}`));
          }, timeoutMs);
          waiters.add(check);
          check();
        }),
      get isEnded() {
        return isEnded;
      },
      ended,
    };
    socket.on('data', (chunk: Buffer) => {
      buffer = Buffer.concat([buffer, chunk]);
      if (!headDone) {
        const end = buffer.indexOf('\r\n\r\n');
        if (end === -1) return;
        headDone = true;
        connection.head = buffer.subarray(0, end).toString('latin1');
        connection.status = Number(/^HTTP\/1\.1 (\d+)/.exec(connection.head)?.[1] ?? 0);
        buffer = buffer.subarray(end + 4);
        resolve(connection);
      }
      const seen = frames.length;
      buffer = readFrames(buffer, frames);
      if (options.answerPings) {
        for (let i = seen; i < frames.length; i++) if (frames[i]!.opcode === OPCODE.ping) connection.send(OPCODE.pong, frames[i]!.payload);
      }
      wake();
    });
    socket.once('close', () => {
      if (!headDone) reject(new Error('the connection closed before the upgrade was answered'));
    });
    socket.write(rawUpgradeRequest(path, `127.0.0.1:${port}`, headers));
  });
}

/** Moves every complete (unmasked, server) frame out of `buffer`; returns the rest. */
function readFrames(input: Buffer, frames: ServerFrame[]): Buffer {
  let buffer = input;
  for (;;) {
    if (buffer.length < 2) return buffer;
    let length = buffer[1]! & 0x7f;
    let offset = 2;
    if (length === 126) {
      if (buffer.length < 4) return buffer;
      length = buffer.readUInt16BE(2);
      offset = 4;
    } else if (length === 127) {
      if (buffer.length < 10) return buffer;
      length = Number(buffer.readBigUInt64BE(2));
      offset = 10;
    }
    if (buffer.length < offset + length) return buffer;
    frames.push({ opcode: buffer[0]! & 0x0f, payload: Buffer.from(buffer.subarray(offset, offset + length)) });
    buffer = buffer.subarray(offset + length);
  }
}
