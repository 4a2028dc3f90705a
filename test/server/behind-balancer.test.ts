import { connect as tcpConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { loadSettings } from '../../src/config/settings.js';
import type { Settings } from '../../src/config/settings.js';
import { TestClient } from '../helpers/client.js';
import { startTestRelay, type LedgerTestRelay } from '../helpers/relay.js';
import { rawUpgradeRequest } from '../hardening/raw-socket.js';

/*
 * Client addresses behind a load balancer: a trusted proxy names the client
 * (X-Forwarded-For, Forwarded, or a PROXY protocol header on the raw
 * connection); anyone else is the address they connect from. The tests
 * connect from 127.0.0.1, which is the balancer when it is trusted and a
 * client like any other when it is not.
 */

let stack: LedgerTestRelay | undefined;
afterEach(async () => {
  await stack?.close();
  stack = undefined;
});

async function relayWith(settings: Partial<Settings>, tls = false): Promise<LedgerTestRelay> {
  stack = await startTestRelay({ settings: { logLevel: 'info', ...settings }, ...(tls ? { tls: true } : {}) });
  return stack;
}

function port(): number {
  return Number(new URL(stack!.wsUrl).port);
}

/** One upgrade with a wrong key: the status it is refused with (401 counted, 429 limited). */
async function refusedStatus(headers: Record<string, string>): Promise<number> {
  const client = stack!.connect({ key: 'rk_not_a_key_0000', headers });
  await client.closedWith();
  return client.unexpected!.status;
}

/** The client address the relay logged for a session opened with `headers` (or over `socket`). */
async function addressOfSession(client: TestClient): Promise<string> {
  const before = stack!.logs.filter((l) => l.msg === 'session started').length;
  await client.next('session.created');
  const started = stack!.logs.filter((l) => l.msg === 'session started');
  expect(started).toHaveLength(before + 1);
  client.close();
  await client.closedWith();
  return started.at(-1)!.clientAddress as string;
}

function sessionWith(headers: Record<string, string>): Promise<string> {
  return addressOfSession(stack!.connect({ headers }));
}

/** A client behind a balancer that speaks the PROXY protocol: `header` goes first on the TCP connection. */
function proxiedClient(header: Buffer | string, tls = false, headers: Record<string, string> = {}): TestClient {
  const createConnection = () => {
    const raw = tcpConnect(port(), '127.0.0.1');
    raw.write(header);
    return tls ? tlsConnect({ socket: raw, rejectUnauthorized: false }) : raw;
  };
  const socket = new WebSocket(stack!.url(), { headers: { Authorization: `Bearer ${stack!.key}`, ...headers }, perMessageDeflate: false, rejectUnauthorized: false, createConnection: createConnection as never });
  return new TestClient(socket);
}

function proxyV2(source: string, options: { local?: boolean; tlv?: boolean } = {}): Buffer {
  const signature = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
  const ipv6 = source.includes(':');
  let addresses: Buffer;
  if (ipv6) {
    addresses = Buffer.alloc(36);
    expandIpv6(source).forEach((g, i) => addresses.writeUInt16BE(parseInt(g, 16), i * 2));
    addresses.writeUInt16BE(0xfe80, 16); // destination: fe80::1
    addresses.writeUInt16BE(1, 30);
    addresses.writeUInt16BE(51_000, 32);
    addresses.writeUInt16BE(443, 34);
  } else {
    addresses = Buffer.from([...source.split('.').map(Number), 10, 0, 0, 1, 0xc7, 0x38, 0x01, 0xbb]);
  }
  // A NOOP TLV, as balancers add their own: it is skipped.
  const tlv = options.tlv ? Buffer.from([0x04, 0x00, 0x03, 1, 2, 3]) : Buffer.alloc(0);
  const body = Buffer.concat([addresses, tlv]);
  const head = Buffer.from([options.local ? 0x20 : 0x21, ipv6 ? 0x21 : 0x11, body.length >> 8, body.length & 0xff]);
  return Buffer.concat([signature, head, body]);
}

function expandIpv6(address: string): string[] {
  const [left, right] = address.split('::');
  const l = left ? left.split(':') : [];
  const r = right ? right.split(':') : [];
  return [...l, ...Array<string>(8 - l.length - r.length).fill('0'), ...r];
}

/** Writes `bytes` on a raw connection and resolves with what came back before the relay hung up. */
function rawExchange(bytes: Buffer | string): Promise<string> {
  return new Promise((resolve) => {
    const socket: Socket = tcpConnect(port(), '127.0.0.1');
    let response = '';
    socket.on('data', (chunk: Buffer) => (response += chunk.toString('latin1')));
    socket.on('error', () => undefined);
    socket.on('close', () => resolve(response));
    socket.write(bytes);
    // A connection that was let through would wait for more: end it once it has answered.
    socket.once('data', () => setTimeout(() => socket.end(), 50));
  });
}

describe('client addresses behind a load balancer', () => {
  it('ignores X-Forwarded-For from a peer that is not a trusted proxy: the handshake limit counts the peer', async () => {
    await relayWith({ handshakesPerMinutePerIp: 2, trustedProxies: ['10.0.0.0/8'] });
    expect(await refusedStatus({ 'X-Forwarded-For': '203.0.113.1' })).toBe(401);
    expect(await refusedStatus({ 'X-Forwarded-For': '203.0.113.2' })).toBe(401);
    // A third spoofed address does not buy a fresh allowance.
    expect(await refusedStatus({ 'X-Forwarded-For': '203.0.113.3' })).toBe(429);
  });

  it('gives two clients behind one trusted proxy limits of their own', async () => {
    await relayWith({ handshakesPerMinutePerIp: 2, trustedProxies: ['127.0.0.1'] });
    for (const client of ['203.0.113.1', '203.0.113.2']) {
      expect(await refusedStatus({ 'X-Forwarded-For': client })).toBe(401);
      expect(await refusedStatus({ 'X-Forwarded-For': client })).toBe(401);
    }
    expect(await refusedStatus({ 'X-Forwarded-For': '203.0.113.1' })).toBe(429);
    expect(await refusedStatus({ 'X-Forwarded-For': '203.0.113.2' })).toBe(429);
    // A client forging an entry at the left does not escape: the proxy appended its real address.
    expect(await refusedStatus({ 'X-Forwarded-For': '198.51.100.7, 203.0.113.1' })).toBe(429);
  });

  it("shows the client's address, not the proxy's, in the admin sessions view and the session's log lines", async () => {
    const token = 'admin-token-0123456789';
    await relayWith({ trustedProxies: ['127.0.0.1'], adminToken: token });
    const client = stack!.connect({ headers: { 'X-Forwarded-For': '203.0.113.90' } });
    await client.next('session.created');
    const answer = await fetch(`${stack!.httpUrl}/admin/sessions`, { headers: { Authorization: `Bearer ${token}` } });
    const { data } = (await answer.json()) as { data: Array<{ client_address: string }> };
    expect(data.map((s) => s.client_address)).toEqual(['203.0.113.90']);
    client.close();
    await stack!.idle();
    const lines = stack!.logs.filter((l) => l.event === 'session.start' || l.event === 'session.end');
    expect(lines.map((l) => l.clientAddress)).toEqual(['203.0.113.90', '203.0.113.90']);
  });

  it('walks X-Forwarded-For from the right over trusted hops, and falls back to the peer on a malformed header', async () => {
    await relayWith({ trustedProxies: ['127.0.0.1', '10.0.0.0/8', 'fd00::/8'] });
    expect(await sessionWith({ 'X-Forwarded-For': '198.51.100.7, 203.0.113.9, 10.1.2.3' })).toBe('203.0.113.9');
    expect(await sessionWith({ 'X-Forwarded-For': '2001:DB8:0:0::17, fd00::2' })).toBe('2001:db8::17');
    expect(await sessionWith({ 'X-Forwarded-For': '203.0.113.9:4711' })).toBe('203.0.113.9');
    expect(await sessionWith({ 'X-Forwarded-For': '10.0.0.1, 10.0.0.2' })).toBe('10.0.0.1');
    expect(await sessionWith({ 'X-Forwarded-For': '203.0.113.9, not-an-address' })).toBe('127.0.0.1');
    expect(await sessionWith({})).toBe('127.0.0.1');
    // Only the configured header is read.
    expect(await sessionWith({ Forwarded: 'for=203.0.113.9' })).toBe('127.0.0.1');
  });

  it('reads the Forwarded header (RFC 7239) when told to: quoted IPv6, ports, several hops and parameters', async () => {
    await relayWith({ trustedProxies: ['127.0.0.1', '10.0.0.0/8'], forwardedHeader: 'forwarded' });
    expect(await sessionWith({ Forwarded: 'for=203.0.113.43' })).toBe('203.0.113.43');
    expect(await sessionWith({ Forwarded: 'For="[2001:db8:cafe::17]:4711"' })).toBe('2001:db8:cafe::17');
    expect(await sessionWith({ Forwarded: 'for="[2001:db8:cafe::17]"' })).toBe('2001:db8:cafe::17');
    expect(await sessionWith({ Forwarded: 'for="203.0.113.43:47011";proto=https;by=10.0.0.5' })).toBe('203.0.113.43');
    expect(await sessionWith({ Forwarded: 'for=198.51.100.1, for=203.0.113.60;proto=http;by=203.0.113.43, for=10.0.0.7' })).toBe('203.0.113.60');
    // The hop nearest the relay hid its client, an element without for=, or something that does not parse: the peer.
    expect(await sessionWith({ Forwarded: 'for=203.0.113.43, for=unknown' })).toBe('127.0.0.1');
    expect(await sessionWith({ Forwarded: 'for=_hidden' })).toBe('127.0.0.1');
    expect(await sessionWith({ Forwarded: 'proto=https' })).toBe('127.0.0.1');
    expect(await sessionWith({ Forwarded: 'for=[2001:db8::1]' })).toBe('127.0.0.1');
    expect(await sessionWith({ Forwarded: 'for="203.0.113.43' })).toBe('127.0.0.1');
  });

  it('takes the client from a PROXY protocol v1 or v2 header on the raw connection, then upgrades', async () => {
    await relayWith({ trustedProxies: ['127.0.0.1'], proxyProtocol: true });
    expect(await addressOfSession(proxiedClient('PROXY TCP4 203.0.113.50 10.0.0.1 51000 443\r\n'))).toBe('203.0.113.50');
    expect(await addressOfSession(proxiedClient('PROXY TCP6 2001:db8::50 fe80::1 51000 443\r\n'))).toBe('2001:db8::50');
    expect(await addressOfSession(proxiedClient(proxyV2('203.0.113.51', { tlv: true })))).toBe('203.0.113.51');
    expect(await addressOfSession(proxiedClient(proxyV2('2001:db8::51')))).toBe('2001:db8::51');
    // The balancer's own connection (a health check) is its own address.
    expect(await addressOfSession(proxiedClient('PROXY UNKNOWN\r\n'))).toBe('127.0.0.1');
    expect(await addressOfSession(proxiedClient(proxyV2('203.0.113.52', { local: true })))).toBe('127.0.0.1');
  });

  it('lets X-Forwarded-For name the client when the PROXY header names a trusted proxy in turn, and only then', async () => {
    await relayWith({ trustedProxies: ['127.0.0.1', '10.0.0.0/8'], proxyProtocol: true });
    const header = (source: string) => `PROXY TCP4 ${source} 10.0.0.1 51000 443\r\n`;
    expect(await addressOfSession(proxiedClient(header('10.9.9.9'), false, { 'X-Forwarded-For': '203.0.113.80' }))).toBe('203.0.113.80');
    expect(await addressOfSession(proxiedClient(header('10.9.9.9')))).toBe('10.9.9.9');
    // The PROXY header named an untrusted client: what that client sends is not read.
    expect(await addressOfSession(proxiedClient(header('203.0.113.81'), false, { 'X-Forwarded-For': '198.51.100.1' }))).toBe('203.0.113.81');
  });

  it('refuses a trusted peer whose connection has no valid PROXY header, and reads untrusted peers as they are', async () => {
    await relayWith({ trustedProxies: ['127.0.0.1'], proxyProtocol: true, headerTimeoutMs: 500 });
    const request = rawUpgradeRequest('/v1/realtime?model=gpt-realtime', 'relay', { Authorization: `Bearer ${stack!.key}` });
    expect(await rawExchange(`PROXY TCP4 203.0.113.999 10.0.0.1 51000 443\r\n${request}`)).toBe('');
    expect(await rawExchange(`PROXY TCP5 203.0.113.1 10.0.0.1 51000 443\r\n${request}`)).toBe('');
    expect(await rawExchange(request)).toBe('');
    const badVersion = proxyV2('203.0.113.1');
    badVersion[12] = 0x31;
    expect(await rawExchange(Buffer.concat([badVersion, Buffer.from(request)]))).toBe('');
    // A header that never completes is dropped after the header timeout.
    const began = Date.now();
    expect(await rawExchange('PROXY TCP4 203.0.113.1')).toBe('');
    expect(Date.now() - began).toBeGreaterThanOrEqual(400);
    expect(stack!.logs.some((l) => l.msg?.startsWith('refused a connection from a trusted proxy without a valid PROXY protocol header'))).toBe(true);
    // The relay goes on serving.
    expect(await addressOfSession(proxiedClient('PROXY TCP4 203.0.113.53 10.0.0.1 51000 443\r\n'))).toBe('203.0.113.53');
    await stack!.close();

    // From a peer that is not trusted no PROXY header is read: the request is plain HTTP, and a header is garbage to it.
    await relayWith({ trustedProxies: ['10.0.0.0/8'], proxyProtocol: true });
    expect(await sessionWith({})).toBe('127.0.0.1');
    expect(await rawExchange(`PROXY TCP4 203.0.113.1 10.0.0.1 51000 443\r\n${request}`)).toMatch(/^HTTP\/1\.1 400/);
  });

  it('reads a PROXY header before the TLS handshake', async () => {
    await relayWith({ trustedProxies: ['127.0.0.1'], proxyProtocol: true }, true);
    expect(await addressOfSession(proxiedClient('PROXY TCP4 203.0.113.54 10.0.0.1 51000 443\r\n', true))).toBe('203.0.113.54');
    expect(await addressOfSession(proxiedClient(proxyV2('2001:db8::54'), true))).toBe('2001:db8::54');
  });

  it('judges a subprotocol key by the client, not a balancer on loopback', async () => {
    await relayWith({ trustedProxies: ['127.0.0.1'] });
    const browser = stack!.connect({ key: undefined, protocols: ['realtime', `openai-insecure-api-key.${stack!.key}`], headers: { 'X-Forwarded-For': '203.0.113.70' } });
    expect((await browser.next('error')).error).toMatchObject({ code: 'insecure_key_transport' });
    const local = stack!.connect({ key: undefined, protocols: ['realtime', `openai-insecure-api-key.${stack!.key}`] });
    await local.next('session.created');
    local.close();
  });

  it('refuses a wrong trusted-proxy setting at start-up with the entry named', () => {
    expect(() => loadSettings({ RELAY_TRUSTED_PROXIES: '10.0.0.0/8, 10.0.0.0/33' })).toThrow('RELAY_TRUSTED_PROXIES: "10.0.0.0/33" is not an IPv4 or IPv6 address or CIDR block');
    expect(() => loadSettings({ RELAY_TRUSTED_PROXIES: 'balancer.internal' })).toThrow('"balancer.internal" is not');
    expect(() => loadSettings({ RELAY_PROXY_PROTOCOL: 'true' })).toThrow('RELAY_PROXY_PROTOCOL: needs RELAY_TRUSTED_PROXIES');
    expect(() => loadSettings({ RELAY_FORWARDED_HEADER: 'x-real-ip' })).toThrow('RELAY_FORWARDED_HEADER: must be one of x-forwarded-for, forwarded');
    expect(loadSettings({ RELAY_TRUSTED_PROXIES: '10.0.0.0/8,::1,[fd00::]/8' }).trustedProxies).toEqual(['10.0.0.0/8', '::1', '[fd00::]/8']);
  });
});
