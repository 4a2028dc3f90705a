import { describe, expect, it } from 'vitest';
import { parseOfferedProtocols, selectProtocol } from '../../src/protocol/subprotocols.js';

describe('browser subprotocols', () => {
  it('finds the key and the realtime protocol in any order', () => {
    const offered = parseOfferedProtocols('openai-insecure-api-key.rk_abc, realtime, openai-beta.realtime-v1');
    expect(offered).toMatchObject({ offersRealtime: true, key: 'rk_abc', beta: true });
  });

  it('selects exactly "realtime" and never the key-bearing entry', () => {
    expect(selectProtocol(new Set(['openai-insecure-api-key.rk_abc', 'realtime']))).toBe('realtime');
    expect(selectProtocol(new Set(['openai-insecure-api-key.rk_abc']))).toBe(false);
  });

  it('treats an empty key entry as no key', () => {
    expect(parseOfferedProtocols('realtime, openai-insecure-api-key.').key).toBeUndefined();
    expect(parseOfferedProtocols(undefined)).toMatchObject({ all: [], offersRealtime: false, key: undefined });
  });
});
