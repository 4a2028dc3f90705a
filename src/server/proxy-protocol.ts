import type { Server } from 'node:http';
import type { Socket } from 'node:net';
import { Duplex } from 'node:stream';
import { canonicalAddress, type TrustedProxies } from './client-address.js';

/**
 * The PROXY protocol (HAProxy's, versions 1 and 2): a balancer that passes
 * TCP through writes one header before the client's bytes, naming the client.
 * It is read on the raw socket, before HTTP or TLS sees a byte, and only from
 * trusted peers; a trusted peer that sends no valid header is refused, since
 * the relay could not tell who the client is.
 */

const V1_PREFIX = Buffer.from('PROXY ');
const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
/** The longest v1 line, CRLF included (the specification's bound). */
const V1_MAX = 107;
const V2_FIXED = 16;

export type ProxyHeader =
  | { state: 'incomplete' }
  | { state: 'invalid'; reason: string }
  /** `source` null: the connection is the balancer's own (LOCAL, UNKNOWN, or a family without an IP address). */
  | { state: 'complete'; length: number; source: string | null };

const INCOMPLETE: ProxyHeader = { state: 'incomplete' };

function invalid(reason: string): ProxyHeader {
  return { state: 'invalid', reason };
}

function startsLike(data: Buffer, prefix: Buffer): boolean {
  const n = Math.min(data.length, prefix.length);
  return data.subarray(0, n).equals(prefix.subarray(0, n));
}

/** Reads a PROXY header at the start of `data`: complete, invalid, or waiting for more bytes. */
export function parseProxyHeader(data: Buffer): ProxyHeader {
  if (startsLike(data, V2_SIGNATURE)) return data.length < V2_FIXED ? INCOMPLETE : parseV2(data);
  if (startsLike(data, V1_PREFIX)) return data.length < V1_PREFIX.length ? INCOMPLETE : parseV1(data);
  return invalid('the connection does not start with a PROXY protocol header');
}

function port(text: string | undefined): boolean {
  return text !== undefined && /^\d{1,5}$/.test(text) && Number(text) <= 65535;
}

function parseV1(data: Buffer): ProxyHeader {
  const end = data.subarray(0, V1_MAX).indexOf('\r\n');
  if (end === -1) return data.length >= V1_MAX ? invalid('the PROXY v1 line is longer than 107 bytes') : INCOMPLETE;
  const line = data.subarray(0, end).toString('latin1');
  const parts = line.split(' ');
  const length = end + 2;
  if (parts[1] === 'UNKNOWN') return { state: 'complete', length, source: null };
  const [, family, source, destination, sourcePort, destinationPort] = parts;
  const version = family === 'TCP4' ? 4 : family === 'TCP6' ? 6 : 0;
  if (version === 0) return invalid(`unknown PROXY v1 family "${family ?? ''}"`);
  if (parts.length !== 6 || !port(sourcePort) || !port(destinationPort)) return invalid('a PROXY v1 line has five fields after PROXY');
  if (!isAddress(source!, version) || !isAddress(destination!, version)) return invalid(`a PROXY v1 ${family} line names an address that is not IPv${version}`);
  return { state: 'complete', length, source: canonicalAddress(source!) };
}

function isAddress(text: string, version: 4 | 6): boolean {
  // Strict dotted quads for v1: no leading zeros, which some parsers read as octal.
  if (version === 4) return /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/.test(text);
  try {
    return text.includes(':') && new URL(`http://[${text}]/`).hostname.length > 2;
  } catch {
    return false;
  }
}

function parseV2(data: Buffer): ProxyHeader {
  const versionCommand = data[12]!;
  if (versionCommand >> 4 !== 2) return invalid(`PROXY v2 header with version ${versionCommand >> 4}`);
  const command = versionCommand & 0x0f;
  if (command > 1) return invalid(`PROXY v2 header with unknown command ${command}`);
  const addressFamily = data[13]! >> 4;
  const length = V2_FIXED + data.readUInt16BE(14);
  if (data.length < length) return INCOMPLETE;
  // LOCAL: the balancer's own connection (a health check); its addresses mean nothing.
  if (command === 0) return { state: 'complete', length, source: null };
  const block = data.subarray(V2_FIXED, length);
  if (addressFamily === 1) {
    if (block.length < 12) return invalid('PROXY v2 IPv4 addresses are cut short');
    return { state: 'complete', length, source: Array.from(block.subarray(0, 4)).join('.') };
  }
  if (addressFamily === 2) {
    if (block.length < 36) return invalid('PROXY v2 IPv6 addresses are cut short');
    const groups: string[] = [];
    for (let i = 0; i < 16; i += 2) groups.push(block.readUInt16BE(i).toString(16));
    return { state: 'complete', length, source: canonicalAddress(groups.join(':')) };
  }
  // UNSPEC or a UNIX socket: no IP address to name.
  return { state: 'complete', length, source: null };
}

/** The client each connection's PROXY header named, by the socket HTTP (or TLS) was handed. */
const namedClients = new WeakMap<object, string>();

/**
 * The address a PROXY header named for the socket a request arrived on, if
 * there was one. Over TLS the request's socket wraps the stream handed to TLS:
 * Node keeps that stream as the TLS handle's parent.
 */
export function proxiedSource(socket: Socket): string | undefined {
  const named = namedClients.get(socket);
  if (named !== undefined) return named;
  const parent = (socket as { _handle?: { _parentWrap?: { stream?: object } } })._handle?._parentWrap?.stream;
  return parent === undefined ? undefined : namedClients.get(parent);
}

export interface ProxyProtocolOptions {
  trustedProxies: TrustedProxies;
  /** A trusted peer that has not sent a whole header by then is dropped. */
  headerTimeoutMs: number;
  /** A trusted peer's connection was refused (no valid header in time). */
  refused?(peer: string, reason: string): void;
}

export interface ProxyProtocolListener {
  /** Drops the connections still waiting for their header (the server is closing). */
  destroyPending(): void;
}

/** A v2 header with every TLV a balancer might add fits in this; more is not a header. */
const MAX_HEADER_BYTES = V2_FIXED + 65_535;

/**
 * Puts the PROXY protocol in front of `server`'s own connection handling:
 * trusted peers' sockets reach HTTP (or TLS) only once their header is read,
 * with it removed; other peers' sockets go straight through, untouched.
 */
export function acceptProxyProtocol(server: Server, options: ProxyProtocolOptions): ProxyProtocolListener {
  const tls = typeof (server as { addContext?: unknown }).addContext === 'function';
  const handlers = server.listeners('connection') as Array<(socket: Duplex) => void>;
  server.removeAllListeners('connection');
  const pending = new Set<Socket>();
  const handOver = (socket: Duplex) => {
    for (const handler of handlers) handler.call(server, socket);
  };

  server.on('connection', function proxyProtocolOnConnection(socket: Socket) {
    const peer = socket.remoteAddress ?? '';
    if (!options.trustedProxies.has(peer)) return handOver(socket);
    pending.add(socket);
    let received: Buffer = Buffer.alloc(0);
    const refuse = (reason: string) => {
      finish();
      options.refused?.(canonicalAddress(peer), reason);
      socket.destroy();
    };
    const timer = setTimeout(() => refuse('no PROXY protocol header in time'), options.headerTimeoutMs);
    const socketOnData = (chunk: Buffer) => {
      received = received.length === 0 ? chunk : Buffer.concat([received, chunk]);
      const header = parseProxyHeader(received);
      if (header.state === 'incomplete') {
        if (received.length > MAX_HEADER_BYTES) refuse('the PROXY protocol header is too long');
        return;
      }
      if (header.state === 'invalid') return refuse(header.reason);
      finish();
      socket.pause();
      const rest = received.subarray(header.length);
      const client = header.source ?? canonicalAddress(peer);
      if (tls) {
        // TLS reads a plain socket's handle directly and would miss bytes read here: it gets a stream instead.
        const stream = new PrefixedStream(socket, rest);
        namedClients.set(stream, client);
        handOver(stream);
      } else {
        if (rest.length > 0) socket.unshift(rest);
        namedClients.set(socket, client);
        handOver(socket);
        socket.resume();
      }
    };
    const socketOnGone = () => finish();
    function finish() {
      clearTimeout(timer);
      pending.delete(socket);
      socket.off('data', socketOnData);
      socket.off('close', socketOnGone);
    }
    socket.on('error', ignore);
    socket.on('data', socketOnData);
    socket.on('close', socketOnGone);
  });

  return {
    destroyPending() {
      for (const socket of pending) socket.destroy();
    },
  };
}

/** A socket's bytes after its PROXY header, as a plain stream (for TLS, which then reads through it). */
class PrefixedStream extends Duplex {
  constructor(
    private readonly socket: Socket,
    rest: Buffer,
  ) {
    super({ allowHalfOpen: false });
    if (rest.length > 0) this.push(rest);
    socket.on('data', (chunk: Buffer) => {
      if (!this.push(chunk)) socket.pause();
    });
    socket.once('end', () => this.push(null));
    socket.once('close', () => this.destroy());
    socket.on('error', (error) => this.destroy(error));
  }

  override _read(): void {
    this.socket.resume();
  }

  override _write(chunk: Buffer, encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.socket.write(chunk, encoding, callback);
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.socket.end(callback);
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.socket.destroy();
    callback(error);
  }
}

function ignore(): void {}
