import { describe, expect, it } from 'vitest';
import { isSendableCloseCode, mapCloseCode, truncateCloseReason } from '../../src/protocol/close-codes.js';

describe('close codes told to the other side', () => {
  it('never sends the reserved codes 1005, 1006 and 1015', () => {
    expect(mapCloseCode(1005)).toBe(1000);
    expect(mapCloseCode(1006)).toBe(1011);
    expect(mapCloseCode(1015)).toBe(1011);
  });

  it('passes sendable codes through unchanged', () => {
    for (const code of [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1011, 1013, 3000, 4000, 4999]) expect(mapCloseCode(code)).toBe(code);
  });

  it('maps codes outside the registered ranges to 1011', () => {
    for (const code of [0, 999, 1004, 1016, 2000, 2999, 5000]) {
      expect(isSendableCloseCode(code)).toBe(false);
      expect(mapCloseCode(code)).toBe(1011);
    }
  });

  it('keeps close reasons within 123 bytes', () => {
    expect(truncateCloseReason('short')).toBe('short');
    const long = truncateCloseReason('é'.repeat(200));
    expect(Buffer.byteLength(long)).toBeLessThanOrEqual(123);
  });
});
