import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { startRelay } from '../app/start.js';
import { openLedger, type KeyRecord, type Ledger } from '../billing/ledger/index.js';
import { formatUsd, parseUsd } from '../billing/prices.js';
import { ConfigError, loadSettings, settingsTable, type Settings } from '../config/settings.js';
import { loadUpstreamsFile } from '../config/upstreams.js';
import { describeMachine, toMermaid } from '../machines/diagram.js';
import { sessionMachine } from '../machines/session.js';
import { createLogger } from '../observability/logger.js';

const HELP = `realtime-relay: a metering relay for the OpenAI Realtime API

Usage: relay [command] [options]

Commands:
  start                       run the relay (the default)
  keys create --name N --balance USD [--spend-cap USD] [--max-sessions N] [--multiplier X]
                              create a relay key; the key is printed once
  keys list                   list keys and balances
  keys topup <id|name> --amount USD
  keys disable <id|name>      (keys enable <id|name> to undo)
  usage [--key K] [--since ISO-DATE] [--format csv|json]
  machine --json | --mermaid  print the session state machine
  check-config                validate the settings and exit
  --help                      this text

Options:
  --inspect                   send session actors to a Stately inspector (RELAY_INSPECT_URL)

Settings (environment variables; a JSON file in RELAY_CONFIG_FILE may set them by key):
`;

export function helpText(): string {
  const rows = settingsTable();
  const width = Math.max(...rows.map((r) => r.env.length));
  return HELP + rows.map((r) => `  ${r.env.padEnd(width)}  ${r.description} [default: ${r.default}]`).join('\n') + '\n';
}

class UsageError extends Error {}

function requireString(value: string | boolean | undefined, name: string): string {
  if (typeof value !== 'string' || value === '') throw new UsageError(`${name} is required`);
  return value;
}

function multiplierPpm(value: string): number {
  const nano = parseUsd(value);
  // parseUsd gives 9 decimals; the multiplier keeps 6 (parts per million).
  if (nano % 1000n !== 0n) throw new UsageError('--multiplier takes at most 6 decimals');
  return Number(nano / 1000n);
}

function keyView(key: KeyRecord) {
  return {
    id: key.id,
    name: key.name,
    balance: formatUsd(key.balanceNano),
    spendCap: key.spendCapNano === null ? null : formatUsd(key.spendCapNano),
    maxSessions: key.maxSessions,
    multiplier: key.priceMultiplierPpm / 1_000_000,
    disabled: key.disabled,
    createdAt: key.createdAt.toISOString(),
  };
}

async function withLedger<T>(settings: Settings, work: (ledger: Ledger) => Promise<T>): Promise<T> {
  if (!settings.databaseUrl) mkdirSync(settings.dataDir, { recursive: true });
  const ledger = await openLedger({ databaseUrl: settings.databaseUrl, sqlitePath: join(settings.dataDir, 'ledger.db') });
  try {
    return await work(ledger);
  } finally {
    await ledger.close();
  }
}

async function keysCommand(settings: Settings, args: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      name: { type: 'string' },
      balance: { type: 'string' },
      'spend-cap': { type: 'string' },
      'max-sessions': { type: 'string' },
      multiplier: { type: 'string' },
      amount: { type: 'string' },
    },
  });
  const [action, ref] = positionals;
  await withLedger(settings, async (ledger) => {
    switch (action) {
      case 'create': {
        const maxSessions = values['max-sessions'] === undefined ? null : Number(values['max-sessions']);
        if (maxSessions !== null && (!Number.isInteger(maxSessions) || maxSessions < 1)) throw new UsageError('--max-sessions must be a whole number of at least 1');
        const created = await ledger.createKey({
          name: requireString(values.name, '--name'),
          balanceNano: parseUsd(requireString(values.balance, '--balance')),
          spendCapNano: values['spend-cap'] === undefined ? null : parseUsd(values['spend-cap']),
          maxSessions,
          priceMultiplierPpm: values.multiplier === undefined ? 1_000_000 : multiplierPpm(values.multiplier),
        });
        process.stdout.write(`${JSON.stringify({ key: created.key, ...keyView(created.record) }, null, 2)}\n`);
        process.stderr.write('Store the key now: it is not shown again.\n');
        return;
      }
      case 'list':
        process.stdout.write(`${JSON.stringify((await ledger.listKeys()).map(keyView), null, 2)}\n`);
        return;
      case 'topup':
        process.stdout.write(`${JSON.stringify(keyView(await ledger.topUp(requireString(ref, 'a key id or name'), parseUsd(requireString(values.amount, '--amount')))), null, 2)}\n`);
        return;
      case 'disable':
      case 'enable':
        process.stdout.write(`${JSON.stringify(keyView(await ledger.setDisabled(requireString(ref, 'a key id or name'), action === 'disable')), null, 2)}\n`);
        return;
      default:
        throw new UsageError('keys takes create, list, topup, disable or enable');
    }
  });
}

function csvField(value: string): string {
  return /[",\n]/.test(value) ? `"${value.replaceAll('"', '""')}"` : value;
}

async function usageCommand(settings: Settings, args: string[]): Promise<void> {
  const { values } = parseArgs({ args, options: { key: { type: 'string' }, since: { type: 'string' }, format: { type: 'string', default: 'json' } } });
  const since = values.since === undefined ? undefined : new Date(values.since);
  if (since && Number.isNaN(since.getTime())) throw new UsageError('--since must be a date such as 2026-11-01 or 2026-11-01T12:00:00Z');
  if (values.format !== 'json' && values.format !== 'csv') throw new UsageError('--format is csv or json');
  await withLedger(settings, async (ledger) => {
    const rows = await ledger.usage({ key: values.key, since });
    if (values.format === 'csv') {
      const lines = ['at,key,session_id,kind,item_id,model,cost_usd'];
      for (const r of rows) lines.push([r.at.toISOString(), r.keyName, r.sessionId, r.kind, r.itemId, r.model, formatUsd(r.costNano)].map(csvField).join(','));
      process.stdout.write(`${lines.join('\n')}\n`);
    } else {
      process.stdout.write(`${JSON.stringify(rows.map((r) => ({ ...r, at: r.at.toISOString(), cost: formatUsd(r.costNano), costNano: r.costNano.toString() })), null, 2)}\n`);
    }
  });
}

function machineCommand(args: string[]): void {
  const { values } = parseArgs({ args, options: { json: { type: 'boolean' }, mermaid: { type: 'boolean' } } });
  if (values.mermaid) process.stdout.write(`${toMermaid(sessionMachine)}\n`);
  else if (values.json) process.stdout.write(`${JSON.stringify(describeMachine(sessionMachine), null, 2)}\n`);
  else throw new UsageError('machine takes --json or --mermaid');
}

async function startCommand(settings: Settings): Promise<void> {
  const log = createLogger(settings.logLevel);
  const running = await startRelay(settings, log);
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) {
      // A second signal: leave now; recovery settles what is left on the next start.
      log.warn({ signal }, 'second signal: exiting without waiting');
      process.exit(1);
    }
    stopping = true;
    log.info({ signal, sessions: running.relay.registry.size }, 'shutting down: draining live sessions');
    void running.stop().then(
      ({ drained }) => {
        log.info({ drained }, 'stopped');
        process.exit(0);
      },
      (error: unknown) => {
        log.error({ err: error }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
}

export async function main(argv: string[]): Promise<number> {
  const inspectFlag = argv.includes('--inspect');
  const args = argv.filter((a) => a !== '--inspect');
  if (args.includes('--help') || args.includes('-h') || args[0] === 'help') {
    process.stdout.write(helpText());
    return 0;
  }
  const [command = 'start', ...rest] = args;
  if (command === 'machine') {
    machineCommand(rest);
    return 0;
  }
  const settings = loadSettings(process.env, inspectFlag ? { inspect: true } : {});
  switch (command) {
    case 'start':
      await startCommand(settings);
      return -1;
    case 'check-config':
      if (settings.upstreamsFile) loadUpstreamsFile(settings.upstreamsFile);
      process.stdout.write('configuration is valid\n');
      return 0;
    case 'keys':
      await keysCommand(settings, rest);
      return 0;
    case 'usage':
      await usageCommand(settings, rest);
      return 0;
    default:
      throw new UsageError(`unknown command "${command}" (see relay --help)`);
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exitCode = code;
  },
  (error: unknown) => {
    if (error instanceof ConfigError) {
      process.stderr.write(`relay: invalid configuration: ${error.message}\n`);
      process.exit(2);
    }
    if (error instanceof UsageError) {
      process.stderr.write(`relay: ${error.message}\n`);
      process.exit(2);
    }
    const code = (error as { code?: string }).code;
    process.stderr.write(`relay: ${code ? `${code}: ` : ''}${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  },
);
