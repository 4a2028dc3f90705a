import pino, { type Logger } from 'pino';

export type { Logger };

/** Where a key or audio could sit in a logged object: top level, one level down, and request headers (OpenAI's and Azure's). */
export const REDACTED_PATHS = [
  'key', '*.key',
  'apiKey', '*.apiKey',
  'authorization', '*.authorization',
  'Authorization', '*.Authorization',
  '["api-key"]', '*["api-key"]',
  'audio', '*.audio',
  'delta', '*.delta',
  'headers.authorization', '*.headers.authorization',
  'headers.Authorization', '*.headers.Authorization',
  'headers["api-key"]', '*.headers["api-key"]',
];

/**
 * JSON lines for machines; readable lines when a person watches a terminal.
 * Keys and audio never reach a log line: `redact` is the last line of defence
 * behind the callers, which log summaries only.
 */
export function createLogger(level: string, destination: NodeJS.WritableStream = process.stdout): Logger {
  const options: pino.LoggerOptions = {
    level,
    base: { service: 'realtime-relay' },
    redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
  };
  const pretty = (destination as { isTTY?: boolean }).isTTY && !process.env.CI;
  if (pretty) {
    return pino({ ...options, transport: { target: 'pino-pretty', options: { colorize: true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname,service' } } });
  }
  return pino(options, destination as pino.DestinationStream);
}

/**
 * A warning for a fault that repeats while it lasts (a backend down, a
 * balancer misconfigured): written at most once per half minute, so one cause
 * does not flood the log.
 */
export function warnAtMostEveryHalfMinute(log: Logger): (fields: object, message: string) => void {
  let warnedAt = 0;
  return (fields, message) => {
    if (Date.now() - warnedAt < 30_000) return;
    warnedAt = Date.now();
    log.warn(fields, message);
  };
}
