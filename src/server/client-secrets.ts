import { Hono, type Context } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { ERRORS, RelayError, RequestError, errorBody } from '../errors.js';
import { CLIENT_SECRET_TTL, isObject } from '../protocol/client-secret.js';
import { InputError, parseAmount } from './admin/operations.js';
import { bearer } from './handshake.js';
import type { ClientSecretMinter, ClientSecretRequest } from './ports.js';

const MAX_BODY_BYTES = 64 * 1024;

function rejectUnknown(fields: Record<string, unknown>, known: readonly string[], prefix = ''): void {
  for (const name of Object.keys(fields)) {
    if (!known.includes(name)) throw new RequestError('unknown_parameter', `Unknown parameter: '${prefix}${name}'.`, `${prefix}${name}`);
  }
}

/** `expires_after`: anchored at creation, 10 to 7200 seconds, 600 by default (OpenAI's rules and wording). */
function parseExpiresAfter(value: unknown): number {
  if (value === undefined || value === null) return CLIENT_SECRET_TTL.defaultSeconds;
  if (!isObject(value)) throw new RequestError('invalid_type', "Invalid type for 'expires_after': expected an object.", 'expires_after');
  rejectUnknown(value, ['anchor', 'seconds'], 'expires_after.');
  if (value.anchor !== undefined && value.anchor !== 'created_at') {
    throw new RequestError('invalid_value', `Invalid value: ${JSON.stringify(value.anchor)}. Supported values are: 'created_at'.`, 'expires_after.anchor');
  }
  const seconds = value.seconds ?? CLIENT_SECRET_TTL.defaultSeconds;
  if (typeof seconds !== 'number' || !Number.isInteger(seconds)) {
    throw new RequestError('invalid_type', "Invalid type for 'expires_after.seconds': expected an integer.", 'expires_after.seconds');
  }
  if (seconds < CLIENT_SECRET_TTL.minSeconds) {
    throw new RequestError('integer_below_min_value', `Invalid 'expires_after.seconds': integer below minimum value. Expected a value >= ${CLIENT_SECRET_TTL.minSeconds}, but got ${seconds} instead.`, 'expires_after.seconds');
  }
  if (seconds > CLIENT_SECRET_TTL.maxSeconds) {
    throw new RequestError('integer_above_max_value', `Invalid 'expires_after.seconds': integer above maximum value. Expected a value <= ${CLIENT_SECRET_TTL.maxSeconds}, but got ${seconds} instead.`, 'expires_after.seconds');
  }
  return seconds;
}

/** The relay's own extension, `relay: { spend_cap: "0.50" }`: USD as a decimal string, like every amount of the admin API. */
function parseSpendCap(value: unknown): bigint | null {
  if (value === undefined || value === null) return null;
  if (!isObject(value)) throw new RequestError('invalid_type', "Invalid type for 'relay': expected an object.", 'relay');
  rejectUnknown(value, ['spend_cap'], 'relay.');
  if (value.spend_cap === undefined || value.spend_cap === null) return null;
  try {
    return parseAmount(value.spend_cap, 'relay.spend_cap', { positive: true });
  } catch (error) {
    if (error instanceof InputError) throw new RequestError(error.code, `Invalid 'relay.spend_cap': ${error.problem}.`, 'relay.spend_cap');
    throw error;
  }
}

async function readRequest(c: Context): Promise<ClientSecretRequest> {
  const text = await c.req.text();
  let body: unknown = {};
  if (text.trim() !== '') {
    try {
      body = JSON.parse(text);
    } catch {
      throw new RequestError('invalid_json', 'The request body is not valid JSON.');
    }
  }
  if (!isObject(body)) throw new RequestError('invalid_json');
  rejectUnknown(body, ['expires_after', 'session', 'relay']);
  const session = body.session ?? {};
  if (!isObject(session)) throw new RequestError('invalid_type', "Invalid type for 'session': expected an object.", 'session');
  return { expiresAfterSeconds: parseExpiresAfter(body.expires_after), session, spendCapNano: parseSpendCap(body.relay) };
}

/**
 * `POST /v1/realtime/client_secrets`, as OpenAI serves it: an app's server
 * mints a short-lived `ek_…` secret with its relay key and hands it to a
 * browser or phone. Errors come back in OpenAI's envelope.
 */
export function clientSecretRoutes(minter: ClientSecretMinter): Hono {
  const routes = new Hono();
  routes.onError((error, c) => {
    if (error instanceof RequestError) return c.json(error.toBody(), error.status as 400);
    if (error instanceof RelayError) return c.json(error.toBody(), error.status as 400);
    return c.json(errorBody('internal_error'), ERRORS.internal_error.status);
  });
  routes.use(
    '*',
    bodyLimit({
      maxSize: MAX_BODY_BYTES,
      onError: () => {
        throw new RequestError('request_too_large', `A request body may have at most ${MAX_BODY_BYTES} bytes.`);
      },
    }),
  );
  routes.post('/', async (c) => {
    // Who asks is checked first: a stranger learns nothing from the body's errors.
    const caller = await minter.authenticate(bearer(c.req.header('authorization')) ?? c.req.header('api-key') ?? undefined);
    const request = await readRequest(c);
    c.header('Cache-Control', 'no-store');
    return c.json(await minter.mint(caller, request));
  });
  return routes;
}
