import { readFileSync } from 'node:fs';
import { Webhook } from 'standardwebhooks';
import { z } from 'zod';
import { FORWARDED_HEADERS, parseNetwork, type ForwardedHeader } from '../server/client-address.js';

/**
 * Every setting, in one place: its environment variable, its key in the
 * optional JSON config file, its default and what it means. `relay --help`
 * and the README's configuration table are generated from this list.
 */
interface SettingSpec<T> {
  env: string;
  schema: z.ZodType<T>;
  default: T;
  /** How the default reads in help text. */
  shown?: string;
  description: string;
}

const wholeNumber = (min: number, max: number, unit: string) =>
  z.coerce
    .number({ error: () => `must be a whole number of ${unit}` })
    .int({ error: () => `must be a whole number of ${unit}` })
    .min(min, { error: () => `must be at least ${min} ${unit}` })
    .max(max, { error: () => `must be at most ${max} ${unit}` });
const port = z.coerce
  .number({ error: () => 'must be a port number from 0 to 65535' })
  .int({ error: () => 'must be a port number from 0 to 65535' })
  .min(0, { error: () => 'must be a port number from 0 to 65535' })
  .max(65535, { error: () => 'must be a port number from 0 to 65535' });
const millis = wholeNumber(1, 7 * 24 * 3600 * 1000, 'milliseconds');
const bytes = wholeNumber(1024, 1024 * 1024 * 1024, 'bytes');
const flag = z.union([z.boolean(), z.enum(['1', '0', 'true', 'false', 'yes', 'no', 'on', 'off'])]).transform((v) => v === true || v === '1' || v === 'true' || v === 'yes' || v === 'on');
const optionalString = z.string().min(1).optional();
const url = (protocols: string[]) =>
  z.string().refine((value) => {
    try {
      return protocols.includes(new URL(value).protocol);
    } catch {
      return false;
    }
  }, `must be a URL starting with ${protocols.map((p) => `${p}//`).join(' or ')}`);
const usd = z
  .union([z.string(), z.number()])
  .transform(String)
  .refine((v) => /^\d+(\.\d{1,9})?$/.test(v), 'must be a non-negative amount in USD such as 10 or 0.05');
// A bearer token travels as one word after "Bearer ": a space, tab, line break or
// control character in it could never be sent back, so no request would ever match.
const bearerToken = z
  .string()
  .min(16, 'must be at least 16 characters')
  .refine((v) => !/[\s\p{Cc}]/u.test(v), 'must not contain spaces, tabs, line breaks or other control characters (it is sent as one word after "Bearer ")');
// Usage is sent over TLS; plain http only to this machine (a receiver beside the relay, or a test).
const LOOPBACK_HOSTS = new Set(['127.0.0.1', 'localhost', '[::1]']);
const webhookUrl = z.string().refine((value) => {
  try {
    const target = new URL(value);
    return target.protocol === 'https:' || (target.protocol === 'http:' && LOOPBACK_HOSTS.has(target.hostname));
  } catch {
    return false;
  }
}, 'must be an https:// URL (http:// only for 127.0.0.1, localhost or [::1])');
const webhookSecret = z.string().refine((value) => {
  if (!value.startsWith('whsec_')) return false;
  try {
    new Webhook(value);
    return true;
  } catch {
    return false;
  }
}, 'must be a Standard Webhooks secret: whsec_ followed by base64');
const logLevel = z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']);
const csv = z.union([z.string(), z.array(z.string())]).transform((v) => (Array.isArray(v) ? v : v.split(',')).map((s) => s.trim()).filter(Boolean));
const networks = csv.superRefine((list, context) => {
  const wrong = list.find((entry) => parseNetwork(entry) === null);
  if (wrong !== undefined) context.addIssue({ code: 'custom', message: `"${wrong}" is not an IPv4 or IPv6 address or CIDR block (such as 10.0.0.0/8 or 2001:db8::/32)` });
});

function setting<T>(spec: SettingSpec<T>): SettingSpec<T> {
  return spec;
}

export const SETTINGS = {
  port: setting({ env: 'PORT', schema: port, default: 8080, description: 'Port to listen on (0 picks a free port).' }),
  host: setting({ env: 'HOST', schema: z.string().min(1), default: '127.0.0.1', description: 'Address to listen on.' }),
  openaiApiKey: setting({ env: 'OPENAI_API_KEY', schema: optionalString, default: undefined, shown: '(none)', description: 'Key for the upstream. Without it (and without an upstreams file) the relay starts its built-in upstream simulator.' }),
  openaiBaseUrl: setting({ env: 'OPENAI_BASE_URL', schema: url(['https:', 'http:', 'wss:', 'ws:']).optional(), default: undefined, shown: 'https://api.openai.com/v1', description: 'Base URL of the upstream, as the openai SDK names it; the Realtime endpoint is <base>/realtime.' }),
  upstreamsFile: setting({ env: 'RELAY_UPSTREAMS_FILE', schema: optionalString, default: undefined, shown: '(none)', description: 'JSON file listing upstreams (OpenAI, Azure, compatible) with models, deployments and priorities.' }),
  databaseUrl: setting({ env: 'DATABASE_URL', schema: url(['postgres:', 'postgresql:']).optional(), default: undefined, shown: '(none)', description: 'PostgreSQL ledger. Without it the ledger is SQLite under RELAY_DATA_DIR.' }),
  recoverySweepMs: setting({ env: 'RELAY_RECOVERY_SWEEP_MS', schema: millis, default: 60_000, description: "With DATABASE_URL: every instance settles, this often, the open sessions of instances whose heartbeat stopped 30 s ago (each exactly once, however many sweep at once; never its own), so a dead instance's sessions are closed without waiting for its restart." }),
  dataDir: setting({ env: 'RELAY_DATA_DIR', schema: z.string().min(1), default: './data', description: 'Folder of the embedded SQLite ledger.' }),
  redisUrl: setting({ env: 'REDIS_URL', schema: url(['redis:', 'rediss:']).optional(), default: undefined, shown: '(none)', description: 'Redis for limits shared across instances. Without it limits are per instance.' }),
  redisPrefix: setting({ env: 'RELAY_REDIS_PREFIX', schema: z.string().min(1), default: 'relay:', description: 'Prefix of the Redis keys this relay writes, so that deployments can share one Redis.' }),
  leaseTtlMs: setting({ env: 'RELAY_LEASE_TTL_MS', schema: wholeNumber(1_000, 3_600_000, 'milliseconds'), default: 15_000, description: "With REDIS_URL: a session's concurrency slot expires unless its instance renews it within this time, so a killed instance frees its slots." }),
  tlsCertFile: setting({ env: 'TLS_CERT_FILE', schema: optionalString, default: undefined, shown: '(none)', description: 'PEM certificate: with TLS_KEY_FILE the port serves https:// and wss://.' }),
  tlsKeyFile: setting({ env: 'TLS_KEY_FILE', schema: optionalString, default: undefined, shown: '(none)', description: 'PEM private key for TLS_CERT_FILE.' }),
  adminToken: setting({ env: 'ADMIN_TOKEN', schema: bearerToken.optional(), default: undefined, shown: '(none)', description: 'Enables /admin (API and live sessions page) for this bearer token: at least 16 characters, no whitespace.' }),
  logLevel: setting({ env: 'LOG_LEVEL', schema: logLevel, default: 'info', description: 'fatal, error, warn, info, debug, trace or silent.' }),
  configFile: setting({ env: 'RELAY_CONFIG_FILE', schema: optionalString, default: undefined, shown: '(none)', description: 'Optional JSON file with any of these settings by key; environment variables win.' }),
  priceFile: setting({ env: 'RELAY_PRICE_FILE', schema: optionalString, default: undefined, shown: '(none)', description: 'JSON price file that overrides or extends the built-in prices.' }),
  connectTimeoutMs: setting({ env: 'RELAY_CONNECT_TIMEOUT_MS', schema: millis, default: 10_000, description: 'Deadline for the upstream to answer, failover included.' }),
  drainTimeoutMs: setting({ env: 'RELAY_DRAIN_TIMEOUT_MS', schema: millis, default: 10_000, description: 'How long a closing session waits for the response in flight to finish, so it can be billed.' }),
  pingIntervalMs: setting({ env: 'RELAY_PING_INTERVAL_MS', schema: millis, default: 15_000, description: 'Ping both peers this often; a peer that misses a pong is closed, unless backpressure held either direction since the ping (RELAY_STALL_TIMEOUT_MS judges that).' }),
  idleTimeoutMs: setting({ env: 'RELAY_IDLE_TIMEOUT_MS', schema: millis, default: 600_000, description: 'Close a session after this long without a client frame.' }),
  maxSessionMs: setting({ env: 'RELAY_MAX_SESSION_MS', schema: millis, default: 3_600_000, description: 'Maximum session duration.' }),
  closeTimeoutMs: setting({ env: 'RELAY_CLOSE_TIMEOUT_MS', schema: millis, default: 5_000, description: 'After sending a close frame, terminate a socket that has not closed within this time.' }),
  maxPayloadBytes: setting({ env: 'RELAY_MAX_PAYLOAD_BYTES', schema: bytes, default: 16 * 1024 * 1024, shown: '16777216 (16 MiB)', description: 'Largest client frame; bigger frames close the session with 1009.' }),
  highWaterBytes: setting({ env: 'RELAY_HIGH_WATER_BYTES', schema: bytes, default: 4 * 1024 * 1024, shown: '4194304 (4 MiB)', description: 'Pause reading one side while the other has this much unsent.' }),
  stallTimeoutMs: setting({ env: 'RELAY_STALL_TIMEOUT_MS', schema: millis, default: 10_000, description: "A session paused by backpressure this long is cancelled (close 1011): the response in flight is cancelled upstream, what the slow side cannot take is dropped, and the tail is read and billed. Below RELAY_PING_INTERVAL_MS because a socket the relay has stopped reading cannot answer pings: a peer pinging as often as the relay does would drop it, and the unbilled response with it, before a longer stall ended." }),
  connectQueueFrames: setting({ env: 'RELAY_CONNECT_QUEUE_FRAMES', schema: wholeNumber(1, 100_000, 'frames'), default: 512, description: 'Client frames held while the upstream is dialled; more closes the session with 1008.' }),
  connectQueueBytes: setting({ env: 'RELAY_CONNECT_QUEUE_BYTES', schema: bytes, default: 8 * 1024 * 1024, shown: '8388608 (8 MiB)', description: 'Client bytes held while the upstream is dialled.' }),
  headerTimeoutMs: setting({ env: 'RELAY_HEADER_TIMEOUT_MS', schema: millis, default: 10_000, description: 'Drop connections whose request headers take longer than this (slowloris).' }),
  shutdownTimeoutMs: setting({ env: 'RELAY_SHUTDOWN_TIMEOUT_MS', schema: millis, default: 30_000, description: 'On SIGTERM, exit after at most this long even if sessions are still draining.' }),
  responseReserveUsd: setting({ env: 'RELAY_RESPONSE_RESERVE_USD', schema: usd, default: '0.01', description: 'Balance a key must have left for a response.create to be forwarded.' }),
  responseHoldUsd: setting({ env: 'RELAY_RESPONSE_HOLD_USD', schema: usd.optional(), default: undefined, shown: '(RELAY_RESPONSE_RESERVE_USD)', description: "Held on a key's balance from each admitted response.create until its response.done is charged: a key has at most (balance − holds) ÷ hold responses in flight, across all instances." }),
  demoBalanceUsd: setting({ env: 'RELAY_DEMO_BALANCE_USD', schema: usd, default: '5', description: 'Balance of the demo key created on the first start of an empty ledger (0 disables it).' }),
  allowedOrigins: setting({ env: 'RELAY_ALLOWED_ORIGINS', schema: csv, default: [] as string[], shown: '(any)', description: 'Comma-separated Origin allowlist for browser clients; other origins get 403.' }),
  trustedProxies: setting({ env: 'RELAY_TRUSTED_PROXIES', schema: networks, default: [] as string[], shown: '(none)', description: 'Comma-separated addresses and CIDR blocks (IPv4 and IPv6) of the load balancers in front of the relay. Only their connections may name the client, in RELAY_FORWARDED_HEADER or a PROXY protocol header; the handshake limit, logs and the admin sessions view then use that address. Everyone else is the address they connect from, whatever they send.' }),
  forwardedHeader: setting({ env: 'RELAY_FORWARDED_HEADER', schema: z.enum(FORWARDED_HEADERS, { error: () => `must be one of ${FORWARDED_HEADERS.join(', ')}` }), default: 'x-forwarded-for' as ForwardedHeader, description: 'The header a trusted proxy names the client in: x-forwarded-for or forwarded (RFC 7239). Only this one is read; the balancer must overwrite or append to it.' }),
  proxyProtocol: setting({ env: 'RELAY_PROXY_PROTOCOL', schema: flag, default: false, description: "Connections from RELAY_TRUSTED_PROXIES start with a PROXY protocol header (v1 or v2) naming the client; one without a valid header is refused. Other peers' connections are read as they are. Needs RELAY_TRUSTED_PROXIES." }),
  allowInsecureSubprotocolKey: setting({ env: 'RELAY_ALLOW_INSECURE_SUBPROTOCOL_KEY', schema: flag, default: false, description: 'Accept keys in subprotocols over plain ws:// from non-loopback addresses.' }),
  maxSessionsPerKey: setting({ env: 'RELAY_MAX_SESSIONS_PER_KEY', schema: wholeNumber(0, 1_000_000, 'sessions'), default: 0, shown: '0 (unlimited)', description: 'Default concurrent sessions per key (a key may set its own).' }),
  sessionsPerMinute: setting({ env: 'RELAY_SESSIONS_PER_MINUTE', schema: wholeNumber(0, 1_000_000, 'sessions per minute'), default: 0, shown: '0 (unlimited)', description: 'New sessions per key per minute (token bucket).' }),
  handshakesPerMinutePerIp: setting({ env: 'RELAY_HANDSHAKES_PER_MINUTE_PER_IP', schema: wholeNumber(0, 1_000_000, 'handshakes per minute'), default: 0, shown: '0 (unlimited)', description: 'Upgrade attempts per client address per minute.' }),
  usageWebhookUrl: setting({ env: 'RELAY_USAGE_WEBHOOK_URL', schema: webhookUrl.optional(), default: undefined, shown: '(none)', description: 'Send every charge and settlement as a signed CloudEvent to this endpoint, at least once, from an outbox in the ledger (see Usage events). Without it nothing is written or sent.' }),
  usageWebhookSecret: setting({ env: 'RELAY_USAGE_WEBHOOK_SECRET', schema: webhookSecret.optional(), default: undefined, shown: '(none)', description: 'Standard Webhooks signing secret (whsec_…) for RELAY_USAGE_WEBHOOK_URL; required with it.' }),
  usageWebhookPollMs: setting({ env: 'RELAY_USAGE_WEBHOOK_POLL_MS', schema: millis, default: 1_000, description: 'How often the outbox is looked at for due events while it is empty.' }),
  usageWebhookRetryMs: setting({ env: 'RELAY_USAGE_WEBHOOK_RETRY_MS', schema: millis, default: 1_000, description: 'Delay before the first retry of a failed delivery; it doubles with each failure (half of it random), up to RELAY_USAGE_WEBHOOK_MAX_RETRY_MS.' }),
  usageWebhookMaxRetryMs: setting({ env: 'RELAY_USAGE_WEBHOOK_MAX_RETRY_MS', schema: millis, default: 300_000, description: 'Longest delay between two attempts of one event.' }),
  usageEventsRetentionHours: setting({ env: 'RELAY_USAGE_EVENTS_RETENTION_HOURS', schema: wholeNumber(1, 24 * 366, 'hours'), default: 168, description: 'With RELAY_USAGE_WEBHOOK_URL: delivered usage events are deleted from the outbox this long after their delivery, a bounded batch at a time. Events not delivered yet are never deleted; charges and settlements stay in the ledger either way.' }),
  usageWebhookTimeoutMs: setting({ env: 'RELAY_USAGE_WEBHOOK_TIMEOUT_MS', schema: millis, default: 10_000, description: 'How long one delivery may take before it counts as failed.' }),
  openaiWebhookSecret: setting({ env: 'OPENAI_WEBHOOK_SECRET', schema: webhookSecret.optional(), default: undefined, shown: '(none)', description: "The signing secret (whsec_…) of the webhook registered with OpenAI for incoming phone calls (POST /v1/sip/webhook). Without it that endpoint refuses every request." }),
  sipUpstream: setting({ env: 'RELAY_SIP_UPSTREAM', schema: optionalString, default: undefined, shown: '(the first OpenAI upstream)', description: "The upstream whose project the SIP trunk and the webhook belong to: incoming calls are accepted, rejected and joined there with its key." }),
  sipUnroutedStatus: setting({ env: 'RELAY_SIP_UNROUTED_STATUS', schema: wholeNumber(400, 699, 'SIP status'), default: 404, description: 'SIP status an incoming call no route matches is rejected with.' }),
  sipRefusedStatus: setting({ env: 'RELAY_SIP_REFUSED_STATUS', schema: wholeNumber(400, 699, 'SIP status'), default: 480, description: "SIP status a routed call is rejected with when its key is disabled, has no balance left or its model is not served." }),
  sipBusyStatus: setting({ env: 'RELAY_SIP_BUSY_STATUS', schema: wholeNumber(400, 699, 'SIP status'), default: 486, description: "SIP status a routed call is rejected with when its key is at its concurrent-session or per-minute limit." }),
  sipTenantTimeoutMs: setting({ env: 'RELAY_SIP_TENANT_TIMEOUT_MS', schema: millis, default: 30_000, description: "How long a tenant with its own webhook has to accept, reject or refer a call before the relay rejects it (RELAY_SIP_REFUSED_STATUS)." }),
  inspect: setting({ env: 'RELAY_INSPECT', schema: flag, default: false, description: 'Send every session actor to a Stately inspector (also --inspect).' }),
  inspectUrl: setting({ env: 'RELAY_INSPECT_URL', schema: url(['ws:', 'wss:']), default: 'ws://127.0.0.1:8081', description: 'WebSocket endpoint of the inspector.' }),
} as const;

export type SettingKey = keyof typeof SETTINGS;
export type Settings = { [K in SettingKey]: z.output<(typeof SETTINGS)[K]['schema']> };

export class ConfigError extends Error {
  constructor(readonly setting: string, problem: string) {
    super(`${setting}: ${problem}`);
    this.name = 'ConfigError';
  }
}

function readConfigFile(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new ConfigError('RELAY_CONFIG_FILE', `cannot read ${path} (${(error as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new ConfigError('RELAY_CONFIG_FILE', `${path} is not valid JSON (${(error as Error).message})`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new ConfigError('RELAY_CONFIG_FILE', `${path} must hold a JSON object`);
  }
  for (const key of Object.keys(parsed)) {
    if (!(key in SETTINGS)) throw new ConfigError('RELAY_CONFIG_FILE', `${path}: unknown setting "${key}"`);
  }
  return parsed as Record<string, unknown>;
}

/**
 * Reads every setting from the environment, then the config file, then the
 * default. Throws a ConfigError naming the first wrong setting.
 */
export function loadSettings(env: NodeJS.ProcessEnv = process.env, overrides: Partial<Settings> = {}): Settings {
  const configPath = overrides.configFile ?? env.RELAY_CONFIG_FILE;
  const file = configPath ? readConfigFile(configPath) : {};
  const result: Record<string, unknown> = {};
  for (const [key, spec] of Object.entries(SETTINGS) as Array<[SettingKey, SettingSpec<unknown>]>) {
    if (key in overrides) {
      result[key] = (overrides as Record<string, unknown>)[key];
      continue;
    }
    const fromEnv = env[spec.env];
    const raw = fromEnv !== undefined && fromEnv !== '' ? fromEnv : file[key];
    if (raw === undefined) {
      result[key] = spec.default;
      continue;
    }
    const parsed = spec.schema.safeParse(raw);
    if (!parsed.success) {
      const source = fromEnv !== undefined && fromEnv !== '' ? spec.env : `${key} in ${configPath}`;
      throw new ConfigError(source, parsed.error.issues[0]?.message ?? 'invalid value');
    }
    result[key] = parsed.data;
  }
  const settings = result as Settings;
  if (Boolean(settings.tlsCertFile) !== Boolean(settings.tlsKeyFile)) {
    throw new ConfigError(settings.tlsCertFile ? 'TLS_KEY_FILE' : 'TLS_CERT_FILE', 'TLS_CERT_FILE and TLS_KEY_FILE must be set together');
  }
  if (settings.proxyProtocol && settings.trustedProxies.length === 0) {
    throw new ConfigError('RELAY_PROXY_PROTOCOL', 'needs RELAY_TRUSTED_PROXIES: only the balancers listed there may send a PROXY protocol header');
  }
  // Unsigned usage would let anyone who can reach the receiver forge it.
  if (settings.usageWebhookUrl && !settings.usageWebhookSecret) {
    throw new ConfigError('RELAY_USAGE_WEBHOOK_SECRET', 'is required with RELAY_USAGE_WEBHOOK_URL (a Standard Webhooks secret, whsec_…)');
  }
  return settings;
}

/** Rows for `relay --help` and the README: variable, default, meaning. */
export function settingsTable(): Array<{ env: string; key: string; default: string; description: string }> {
  return (Object.entries(SETTINGS) as Array<[SettingKey, SettingSpec<unknown>]>).map(([key, spec]) => ({
    env: spec.env,
    key,
    default: spec.shown ?? (Array.isArray(spec.default) ? spec.default.join(',') : String(spec.default)),
    description: spec.description,
  }));
}
