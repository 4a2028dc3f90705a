import pino, { type Logger } from 'pino';

export type { Logger };

/**
 * JSON lines for machines; readable lines when a person watches a terminal.
 * Keys and audio never reach a log line: `redact` is the last line of defence
 * behind the callers, which log summaries only.
 */
export function createLogger(level: string, destination: NodeJS.WritableStream = process.stdout): Logger {
  const options: pino.LoggerOptions = {
    level,
    base: { service: 'realtime-relay' },
    redact: { paths: ['key', '*.key', 'apiKey', '*.apiKey', 'authorization', '*.authorization', 'audio', '*.audio', 'delta', '*.delta'], censor: '[redacted]' },
  };
  const pretty = (destination as { isTTY?: boolean }).isTTY && !process.env.CI;
  if (pretty) {
    return pino({ ...options, transport: { target: 'pino-pretty', options: { colorize: true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname,service' } } });
  }
  return pino(options, destination as pino.DestinationStream);
}
