import { BlockList, isIP } from 'node:net';

/**
 * Who a connection is from when load balancers stand in front of the relay.
 * Only peers in the trusted networks may name another address (in a
 * forwarding header, or a PROXY protocol header); everyone else is the
 * address their TCP connection comes from, whatever they send.
 */

/** The header a trusted proxy names the client in. Only one is read: a proxy rewrites one, and a client could forge the other. */
export const FORWARDED_HEADERS = ['x-forwarded-for', 'forwarded'] as const;

export type ForwardedHeader = (typeof FORWARDED_HEADERS)[number];

/** One network as written in RELAY_TRUSTED_PROXIES: an address with an optional prefix length. */
export interface Network {
  address: string;
  prefix: number;
  family: 'ipv4' | 'ipv6';
}

/** `10.0.0.0/8`, `2001:db8::/32`, or a bare address (a network of one); null when it is none of these. */
export function parseNetwork(text: string): Network | null {
  const match = /^([^/]+?)(?:\/(\d{1,3}))?$/.exec(text.trim());
  if (!match) return null;
  const address = canonicalAddress(match[1]!.replace(/^\[(.*)\]$/, '$1'));
  const version = isIP(address);
  if (version === 0) return null;
  const max = version === 4 ? 32 : 128;
  const prefix = match[2] === undefined ? max : Number(match[2]);
  if (prefix > max) return null;
  return { address, prefix, family: version === 4 ? 'ipv4' : 'ipv6' };
}

/**
 * An address as it is compared, counted and shown: IPv4-mapped IPv6 as the
 * IPv4 address (a dual-stack listener reports IPv4 peers that way), IPv6 in
 * its short lowercase form. Anything that is not an address is returned as is.
 */
export function canonicalAddress(address: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped && isIP(mapped[1]!) === 4) return mapped[1]!;
  if (isIP(address) !== 6) return address;
  // The WHATWG URL parser writes IPv6 hosts in their canonical (RFC 5952) form.
  return new URL(`http://[${address}]/`).hostname.slice(1, -1);
}

/** The networks whose peers may name the client. Empty: nobody may. */
export class TrustedProxies {
  private readonly networks = new BlockList();
  readonly size: number;

  constructor(networks: readonly Network[]) {
    for (const n of networks) this.networks.addSubnet(n.address, n.prefix, n.family);
    this.size = networks.length;
  }

  has(address: string | undefined): boolean {
    if (this.size === 0 || address === undefined) return false;
    const canonical = canonicalAddress(address);
    const version = isIP(canonical);
    return version !== 0 && this.networks.check(canonical, version === 4 ? 'ipv4' : 'ipv6');
  }
}

/** One hop of a forwarding header: an address, or null for a hop that hid it (`unknown`, `_obfuscated`). */
type Hop = string | null;

/** `192.0.2.1`, `192.0.2.1:4711`, `2001:db8::1`, `[2001:db8::1]` or `[2001:db8::1]:4711`, without its port; undefined if none of these. */
function nodeAddress(node: string): string | undefined {
  const bracketed = /^\[([^\]]+)\](?::\d{1,5})?$/.exec(node);
  if (bracketed) return isIP(bracketed[1]!) === 6 ? canonicalAddress(bracketed[1]!) : undefined;
  if (isIP(node) !== 0) return canonicalAddress(node);
  const withPort = /^(\d+\.\d+\.\d+\.\d+):\d{1,5}$/.exec(node);
  if (withPort && isIP(withPort[1]!) === 4) return withPort[1]!;
  return undefined;
}

/** X-Forwarded-For: addresses separated by commas, the client first. Null when any entry is not an address. */
export function parseXForwardedFor(header: string): Hop[] | null {
  const hops: Hop[] = [];
  for (const entry of header.split(',')) {
    const address = nodeAddress(entry.trim());
    if (address === undefined) return null;
    hops.push(address);
  }
  return hops;
}

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+/;

/**
 * Forwarded (RFC 7239): elements separated by commas, each `name=value`
 * pairs separated by semicolons, values a token or a quoted string. Each
 * element's `for=` is one hop. Null when the header does not parse or an
 * element has no `for=`.
 */
export function parseForwarded(header: string): Hop[] | null {
  const hops: Hop[] = [];
  let rest = header;
  const skipSpace = () => {
    rest = rest.replace(/^[ \t]+/, '');
  };
  while (true) {
    let forValue: string | undefined;
    skipSpace();
    // One element: pairs until a comma or the end.
    while (true) {
      const name = TOKEN.exec(rest)?.[0];
      if (name === undefined || rest[name.length] !== '=') return null;
      rest = rest.slice(name.length + 1);
      let value: string;
      if (rest.startsWith('"')) {
        const quoted = /^"((?:[^"\\]|\\.)*)"/.exec(rest);
        if (!quoted) return null;
        value = quoted[1]!.replace(/\\(.)/g, '$1');
        rest = rest.slice(quoted[0].length);
      } else {
        const token = TOKEN.exec(rest)?.[0];
        if (token === undefined) return null;
        value = token;
        rest = rest.slice(token.length);
      }
      if (name.toLowerCase() === 'for') {
        if (forValue !== undefined) return null;
        forValue = value;
      }
      skipSpace();
      if (!rest.startsWith(';')) break;
      rest = rest.slice(1);
      skipSpace();
    }
    if (forValue === undefined) return null;
    if (forValue === 'unknown' || forValue.startsWith('_')) hops.push(null);
    else {
      const address = nodeAddress(forValue);
      if (address === undefined) return null;
      hops.push(address);
    }
    if (rest === '') return hops;
    if (!rest.startsWith(',')) return null;
    rest = rest.slice(1);
  }
}

export interface ClientAddressOptions {
  trustedProxies: TrustedProxies;
  forwardedHeader: ForwardedHeader;
}

/**
 * The client's address: from the peer, the forwarding header is walked from
 * the right (the hop nearest the relay) over trusted proxies, and the first
 * untrusted address is the client. A peer that is not trusted is the client
 * and its headers are not read; a header that does not parse, or a hop that
 * hides its address, leaves the peer as the client.
 */
export function resolveClientAddress(peer: string, header: string | undefined, options: ClientAddressOptions): string {
  const { trustedProxies } = options;
  if (header === undefined || !trustedProxies.has(peer)) return peer;
  const hops = options.forwardedHeader === 'forwarded' ? parseForwarded(header) : parseXForwardedFor(header);
  if (hops === null || hops.length === 0) return peer;
  for (let i = hops.length - 1; i >= 0; i--) {
    const hop = hops[i]!;
    if (hop === null) return peer;
    if (!trustedProxies.has(hop)) return hop;
  }
  // Every hop is trusted: the first is as near the client as anyone can say.
  return hops[0]!;
}
