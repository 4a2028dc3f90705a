/**
 * Close codes as they may be sent on the wire. 1005, 1006 and 1015 are
 * reserved for reporting what happened locally (RFC 6455 §7.4.1): a relay
 * that copies one to the other side produces a protocol error there.
 */
export const NORMAL_CLOSURE = 1000;
export const INTERNAL_ERROR = 1011;

export function isSendableCloseCode(code: number): boolean {
  return (
    (code >= 1000 && code <= 1014 && code !== 1004 && code !== 1005 && code !== 1006) ||
    (code >= 3000 && code <= 4999)
  );
}

/**
 * The code to send to one peer after the other closed with `observed`.
 * A clean close without a status (1005) stays clean; an abnormal or TLS
 * failure (1006, 1015) or anything unsendable becomes 1011.
 */
export function mapCloseCode(observed: number): number {
  if (observed === 1005) return NORMAL_CLOSURE;
  return isSendableCloseCode(observed) ? observed : INTERNAL_ERROR;
}

/** Close reasons are limited to 123 bytes of UTF-8; longer ones make `close()` throw. */
export function truncateCloseReason(reason: string): string {
  if (Buffer.byteLength(reason) <= 123) return reason;
  let cut = reason.slice(0, 123);
  while (Buffer.byteLength(cut) > 120) cut = cut.slice(0, -1);
  return `${cut}...`;
}
