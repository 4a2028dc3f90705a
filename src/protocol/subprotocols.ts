/**
 * Browser clients cannot set headers, so they carry credentials in
 * `Sec-WebSocket-Protocol` entries. The relay must answer with exactly
 * `realtime` and never echo the key-bearing entry back.
 */
export const REALTIME_PROTOCOL = 'realtime';
const KEY_PREFIX = 'openai-insecure-api-key.';
const BETA_PROTOCOL = 'openai-beta.realtime-v1';

export interface OfferedProtocols {
  all: string[];
  offersRealtime: boolean;
  key: string | undefined;
  beta: boolean;
}

export function parseOfferedProtocols(header: string | undefined): OfferedProtocols {
  const all = header ? header.split(',').map((p) => p.trim()).filter((p) => p.length > 0) : [];
  let key: string | undefined;
  for (const protocol of all) {
    if (protocol.startsWith(KEY_PREFIX) && protocol.length > KEY_PREFIX.length) key = protocol.slice(KEY_PREFIX.length);
  }
  return { all, offersRealtime: all.includes(REALTIME_PROTOCOL), key, beta: all.includes(BETA_PROTOCOL) };
}

/** ws's `handleProtocols`: choose `realtime` when offered, otherwise no subprotocol at all. */
export function selectProtocol(offered: Set<string>): string | false {
  return offered.has(REALTIME_PROTOCOL) ? REALTIME_PROTOCOL : false;
}
