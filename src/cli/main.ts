import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { demoKeyNotice, startRelay, type RunningRelay } from '../app/start.js';
import { replayDeadLetters, WriteBacklog } from '../billing/backlog.js';
import { openLedger, type Ledger } from '../billing/ledger/index.js';
import { spoolFiles, spoolPathIn } from '../billing/spool-file.js';
import { ConfigError, loadSettings, settingsTable, type Settings } from '../config/settings.js';
import { loadUpstreamsFile } from '../config/upstreams.js';
import { describeMachine, toMermaid } from '../machines/diagram.js';
import { sessionMachine } from '../machines/session.js';
import { createLogger } from '../observability/logger.js';
import { parseNewRoute, routeView } from '../server/admin/route-operations.js';
import { traceSettings } from '../observability/trace-settings.js';
import { InputError, keyView, parseNewKey, parseTopUp, parseUsageRequest, topUpKey, usageCsv, usageJson } from '../server/admin/operations.js';

const HELP = `realtime-relay: a metering relay for the OpenAI Realtime API

Usage: relay [command] [options]

Commands:
  start                       run the relay (the default)
  keys create --name N --balance USD [--spend-cap USD] [--max-sessions N] [--multiplier X]
                              create a relay key; the key is printed once
  keys list                   list keys and balances
  keys topup <id|name> --amount USD
  keys disable <id|name>      (keys enable <id|name> to undo)
  routes add (--number N | --header NAME=VALUE) --key K --model M [--session JSON]
             [--webhook-url URL --webhook-secret whsec_…]
                              route incoming phone calls to a key (see Phone calls (SIP))
  routes list                 list the routes
  routes remove <route id>
  usage [--key K] [--since ISO-DATE] [--format csv|json]
  spool replay [--dead-letter]
                              write the spooled ledger writes now (or, with --dead-letter,
                              those moved to the dead-letter file) and print what was written
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

async function withLedger<T>(settings: Settings, work: (ledger: Ledger) => Promise<T>): Promise<T> {
  if (!settings.databaseUrl) mkdirSync(settings.dataDir, { recursive: true });
  const ledger = await openLedger({ databaseUrl: settings.databaseUrl, sqlitePath: join(settings.dataDir, 'ledger.db'), usageEvents: Boolean(settings.usageWebhookUrl) });
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
        const created = await ledger.createKey(
          parseNewKey({ name: values.name, balance: values.balance, spend_cap: values['spend-cap'], max_sessions: values['max-sessions'], multiplier: values.multiplier }),
        );
        process.stdout.write(`${JSON.stringify({ key: created.key, ...keyView(created.record) }, null, 2)}\n`);
        process.stderr.write('Store the key now: it is not shown again.\n');
        return;
      }
      case 'list':
        process.stdout.write(`${JSON.stringify((await ledger.listKeys()).map(keyView), null, 2)}\n`);
        return;
      case 'topup':
        process.stdout.write(`${JSON.stringify(keyView(await topUpKey(ledger, requireString(ref, 'a key id or name'), parseTopUp({ amount: values.amount }))), null, 2)}\n`);
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

async function routesCommand(settings: Settings, args: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      number: { type: 'string' },
      header: { type: 'string' },
      key: { type: 'string' },
      model: { type: 'string' },
      session: { type: 'string' },
      'webhook-url': { type: 'string' },
      'webhook-secret': { type: 'string' },
    },
  });
  const [action, id] = positionals;
  await withLedger(settings, async (ledger) => {
    switch (action) {
      case 'add': {
        const fields = { number: values.number, header: values.header, key: values.key, model: values.model, session: values.session, webhook_url: values['webhook-url'], webhook_secret: values['webhook-secret'] };
        const route = await ledger.addRoute(parseNewRoute(fields));
        process.stdout.write(`${JSON.stringify(routeView(route), null, 2)}\n`);
        return;
      }
      case 'list':
        process.stdout.write(`${JSON.stringify((await ledger.listRoutes()).map(routeView), null, 2)}\n`);
        return;
      case 'remove': {
        const routeId = requireString(id, 'a route id');
        if (!(await ledger.removeRoute(routeId))) throw new UsageError(`no route has the id "${routeId}"`);
        process.stdout.write(`${JSON.stringify({ id: routeId, deleted: true }, null, 2)}\n`);
        return;
      }
      default:
        throw new UsageError('routes takes add, list or remove');
    }
  });
}

async function usageCommand(settings: Settings, args: string[]): Promise<void> {
  const { values } = parseArgs({ args, options: { key: { type: 'string' }, since: { type: 'string' }, format: { type: 'string', default: 'json' } } });
  const { query, format } = parseUsageRequest(values);
  await withLedger(settings, async (ledger) => {
    const rows = await ledger.usage(query);
    process.stdout.write(format === 'csv' ? usageCsv(rows) : `${JSON.stringify(usageJson(rows), null, 2)}\n`);
  });
}

/**
 * Replays the spool (what a stopped relay left unwritten) or the dead-letter
 * file (what the ledger kept refusing) now. Every write is idempotent, so a
 * relay replaying the same file at its start does no harm.
 */
async function spoolCommand(settings: Settings, args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: { 'dead-letter': { type: 'boolean' } } });
  if (positionals[0] !== 'replay' || positionals.length > 1) throw new UsageError('spool takes replay [--dead-letter]');
  const spoolPath = spoolPathIn(settings.dataDir);
  const files = spoolFiles(spoolPath);
  return withLedger(settings, async (ledger) => {
    if (values['dead-letter']) {
      const report = await replayDeadLetters(ledger, spoolPath);
      process.stdout.write(`${JSON.stringify({ file: files.deadLetter, ...report }, null, 2)}\n`);
      if (report.settledBefore.length > 0) process.stderr.write(`The settlements of ${report.settledBefore.join(', ')} were recorded before these charges: the charges were added to their totals.\n`);
      return report.left.length === 0 ? 0 : 1;
    }
    const backlog = new WriteBacklog(ledger, spoolPath, { retryMs: 60_000 });
    const report = await backlog.replaySpool();
    // What the ledger still refuses goes back to the spool, for the next start or the next replay.
    backlog.close();
    process.stdout.write(`${JSON.stringify({ file: files.spool, ...report, deadLetterFile: files.deadLetter, quarantineFile: files.quarantine }, null, 2)}\n`);
    return report.pending === 0 && report.deadLettered === 0 ? 0 : 1;
  });
}

function machineCommand(args: string[]): void {
  const { values } = parseArgs({ args, options: { json: { type: 'boolean' }, mermaid: { type: 'boolean' } } });
  if (values.mermaid) process.stdout.write(`${toMermaid(sessionMachine)}\n`);
  else if (values.json) process.stdout.write(`${JSON.stringify(describeMachine(sessionMachine), null, 2)}\n`);
  else throw new UsageError('machine takes --json or --mermaid');
}

/** How long closing the ledger and the rest may take after the sessions' deadline. */
const SHUTDOWN_GRACE_MS = 10_000;

async function startCommand(settings: Settings): Promise<void> {
  const log = createLogger(settings.logLevel);
  let running: RunningRelay | null = null;
  let stopping: NodeJS.Signals | null = null;
  const stop = (relay: RunningRelay, signal: NodeJS.Signals) => {
    log.info({ signal, sessions: relay.relay.registry.size }, 'shutting down: draining live sessions');
    // The sessions are bounded by RELAY_SHUTDOWN_TIMEOUT_MS; this bounds closing the ledger and the rest.
    const hardStop = setTimeout(() => {
      log.error({ graceMs: SHUTDOWN_GRACE_MS }, 'shutdown overran its deadline: exiting without waiting');
      process.exit(1);
    }, settings.shutdownTimeoutMs + SHUTDOWN_GRACE_MS);
    hardStop.unref();
    void relay.stop().then(
      ({ drained }) => {
        if (drained) log.info({ drained }, 'stopped');
        else log.warn({ drained, unsettled: relay.relay.registry.size }, 'stopped at the shutdown deadline; the next start settles the sessions left open');
        process.exit(0);
      },
      (error: unknown) => {
        log.error({ err: error }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) {
      // A second signal: leave now; recovery settles what is left on the next start.
      log.warn({ signal }, 'second signal: exiting without waiting');
      process.exit(1);
    }
    stopping = signal;
    if (running) stop(running, signal);
    else log.info({ signal }, 'signal received while starting: stopping once started');
  };
  // Before the start: a signal that arrives while starting must not find Node's default (exit at once).
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  running = await startRelay(settings, log);
  // Straight to the terminal, past the logger: the log stream never carries a key.
  if (running.demoKey) process.stderr.write(demoKeyNotice(running.demoKey));
  if (stopping) stop(running, stopping);
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
      traceSettings(process.env);
      process.stdout.write('configuration is valid\n');
      return 0;
    case 'keys':
      await keysCommand(settings, rest);
      return 0;
    case 'routes':
      await routesCommand(settings, rest);
      return 0;
    case 'usage':
      await usageCommand(settings, rest);
      return 0;
    case 'spool':
      return spoolCommand(settings, rest);
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
    if (error instanceof InputError) {
      process.stderr.write(`relay: --${error.param.replaceAll('_', '-')} ${error.problem}\n`);
      process.exit(2);
    }
    const code = (error as { code?: string }).code;
    process.stderr.write(`relay: ${code ? `${code}: ` : ''}${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  },
);
