/**
 * An incoming call's SIP headers, as OpenAI's webhook lists them: untrusted
 * caller metadata. They are bounded and checked before anything reads them,
 * and a route only ever compares them for equality.
 */

export interface SipHeader {
  name: string;
  value: string;
}

const MAX_HEADERS = 64;
const MAX_NAME = 64;
const MAX_VALUE = 1024;
const TOKEN = /^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/;
// Control characters (a CR/LF above all) never belong in a header value.
const CONTROL = /[\u0000-\u0008\u000a-\u001f\u007f]/;

/** The headers, or why they are not headers. */
export function readSipHeaders(raw: unknown): SipHeader[] | string {
  if (raw === undefined) return [];
  if (!Array.isArray(raw)) return '"data.sip_headers" is not a list.';
  if (raw.length > MAX_HEADERS) return `"data.sip_headers" has more than ${MAX_HEADERS} headers.`;
  const headers: SipHeader[] = [];
  for (const entry of raw) {
    if (typeof entry !== 'object' || entry === null) return 'A SIP header is not an object.';
    const { name, value } = entry as { name?: unknown; value?: unknown };
    if (typeof name !== 'string' || name.length === 0 || name.length > MAX_NAME || !TOKEN.test(name)) return 'A SIP header name is not a token of 1 to 64 characters.';
    if (typeof value !== 'string' || value.length > MAX_VALUE || CONTROL.test(value)) return `A SIP header value is not text of at most ${MAX_VALUE} characters.`;
    headers.push({ name, value });
  }
  return headers;
}

/** The first value of a header (names are case-insensitive), or undefined. */
export function headerValue(headers: SipHeader[], name: string): string | undefined {
  const wanted = name.toLowerCase();
  return headers.find((header) => header.name.toLowerCase() === wanted)?.value;
}

/**
 * The called number: the user part of the `To` URI, as in
 * `"Front desk" <sip:+15551234567@trunk.example;user=phone>;tag=1` or
 * `<tel:+15551234567>`. Undefined when `To` names no user.
 */
export function calledNumber(headers: SipHeader[]): string | undefined {
  const to = headerValue(headers, 'To');
  if (to === undefined) return undefined;
  const uri = /<([^>]*)>/.exec(to)?.[1] ?? to.split(';')[0]!.trim();
  const match = /^(?:sips?|tel):([^@;?>\s]+)/i.exec(uri.trim());
  if (!match) return undefined;
  let user: string;
  try {
    user = decodeURIComponent(match[1]!);
  } catch {
    return undefined;
  }
  return user.length > 0 && user.length <= 256 ? user : undefined;
}
