import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocketServer } from 'ws';
import { settingsTable } from '../../src/config/settings.js';
import type { TransitionInfo } from '../../src/machines/diagram.js';
import { toMermaid } from '../../src/machines/diagram.js';
import { sessionMachine } from '../../src/machines/session.js';
import { TestClient } from '../helpers/client.js';
import type { LogLine } from '../helpers/log-lines.js';
import { ROOT, runRelay, spawnRelay, type RelayProcess } from '../helpers/relay-process.js';

let scratch: string;
beforeAll(() => {
  scratch = mkdtempSync(join(tmpdir(), 'relay-cli-'));
});
afterAll(() => {
  rmSync(scratch, { recursive: true, force: true });
});

describe('relay --help', () => {
  it('lists every setting with its default and what it means, and every command', async () => {
    const { code, stdout, stderr } = await runRelay(['--help']);
    expect({ code, stderr }).toEqual({ code: 0, stderr: '' });
    const lines = stdout.split('\n');
    for (const row of settingsTable()) {
      const line = lines.find((l) => l.trimStart().startsWith(`${row.env} `));
      expect(line, row.env).toBeDefined();
      expect(line).toContain(row.description);
      expect(line).toContain(`[default: ${row.default}]`);
    }
    for (const command of ['start', 'keys create', 'keys list', 'keys topup', 'keys disable', 'usage', 'spool replay [--dead-letter]', 'machine --json | --mermaid', 'check-config', '--inspect']) {
      expect(stdout).toContain(command);
    }
  });
});

describe('a wrong setting', () => {
  // Each case: the environment, and the setting the one line must name.
  const cases: Array<{ what: string; env: (dir: string) => Record<string, string>; names: string[] }> = [
    { what: 'a port that is not a number', env: () => ({ PORT: 'abc' }), names: ['PORT'] },
    { what: 'a database that is not PostgreSQL', env: () => ({ DATABASE_URL: 'mysql://x' }), names: ['DATABASE_URL', 'postgres'] },
    { what: 'a certificate without its key', env: (dir) => ({ TLS_CERT_FILE: join(dir, 'cert.pem') }), names: ['TLS_KEY_FILE', 'TLS_CERT_FILE'] },
    { what: 'an unknown log level', env: () => ({ LOG_LEVEL: 'loud' }), names: ['LOG_LEVEL'] },
    { what: 'an admin token with a space, which no request could send', env: () => ({ ADMIN_TOKEN: 'correct horse battery staple' }), names: ['ADMIN_TOKEN', 'spaces'] },
    {
      what: 'a config file with an unknown key',
      env: (dir) => {
        writeFileSync(join(dir, 'unknown.json'), JSON.stringify({ port: 0, prot: 8080 }));
        return { RELAY_CONFIG_FILE: join(dir, 'unknown.json') };
      },
      names: ['RELAY_CONFIG_FILE', '"prot"'],
    },
    {
      what: 'a config file that is not JSON',
      env: (dir) => {
        writeFileSync(join(dir, 'broken.json'), '{ "port": 0,');
        return { RELAY_CONFIG_FILE: join(dir, 'broken.json') };
      },
      names: ['RELAY_CONFIG_FILE', 'not valid JSON'],
    },
    {
      what: 'a config file with a wrong value',
      env: (dir) => {
        writeFileSync(join(dir, 'value.json'), JSON.stringify({ drainTimeoutMs: -5 }));
        return { RELAY_CONFIG_FILE: join(dir, 'value.json') };
      },
      names: ['drainTimeoutMs'],
    },
  ];

  // Separate processes: run side by side.
  it.concurrent.for(cases)('stops the start with one line naming it, exit code 2, before anything listens: $what', async ({ env, names }, { expect }) => {
    const dir = mkdtempSync(join(scratch, 'case-'));
    const dataDir = join(dir, 'data');
    const { code, stdout, stderr } = await runRelay(['start'], { RELAY_DATA_DIR: dataDir, PORT: '0', ...env(dir) });
    expect(code).toBe(2);
    const lines = stderr.trimEnd().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^relay: invalid configuration: /);
    for (const name of names) expect(lines[0]).toContain(name);
    // Nothing started: no log line (the first is written once the upstream is chosen) and no ledger.
    expect(stdout).toBe('');
    expect(existsSync(dataDir)).toBe(false);
  });

  it('fails check-config the same way, and passes a valid configuration', async () => {
    const dir = mkdtempSync(join(scratch, 'check-'));
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ port: 9000, drainTimeoutMs: 2000 }));
    const [bad, good] = await Promise.all([
      runRelay(['check-config'], { PORT: 'abc' }),
      runRelay(['check-config'], { RELAY_CONFIG_FILE: join(dir, 'config.json'), RELAY_DATA_DIR: join(dir, 'data') }),
    ]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/^relay: invalid configuration: PORT: [^\n]+\n$/);
    expect(good).toMatchObject({ code: 0, stdout: 'configuration is valid\n', stderr: '' });
    expect(existsSync(join(dir, 'data'))).toBe(false);
  });

  it('check-config refuses an admin token with whitespace in it, since no request could ever match it', async () => {
    const results = await Promise.all(['two words-0123456789', 'tab\tseparated-0123456789', 'trailing-newline-0123456789\n'].map((token) => runRelay(['check-config'], { ADMIN_TOKEN: token })));
    for (const { code, stdout, stderr } of results) {
      expect(code).toBe(2);
      expect(stdout).toBe('');
      expect(stderr).toMatch(/^relay: invalid configuration: ADMIN_TOKEN: must not contain spaces, tabs, line breaks[^\n]+\n$/);
    }
    expect(await runRelay(['check-config'], { ADMIN_TOKEN: 'one-word-token-0123456789' })).toMatchObject({ code: 0, stdout: 'configuration is valid\n' });
  });
});

describe.concurrent('relay machine', () => {
  it('--json lists every transition of the session machine, with its guard and delay', async ({ expect }) => {
    const { code, stdout } = await runRelay(['machine', '--json']);
    expect(code).toBe(0);
    const described = JSON.parse(stdout) as { id: string; initial: string; transitions: TransitionInfo[]; states: Array<{ name: string; delays: string[] }> };
    expect(described).toMatchObject({ id: 'session', initial: 'connecting' });

    // Counted from the machine itself: every event-, delay- and invoke-driven transition, and the eventless ones.
    type Node = typeof sessionMachine.root;
    const withChildren = (node: Node): Node[] => [node, ...Object.values(node.states).flatMap(withChildren)];
    const nodes = withChildren(sessionMachine.root);
    const expected = nodes.reduce((n, node) => n + [...node.transitions.values()].flat().length + (node.always?.length ?? 0), 0);
    expect(described.transitions).toHaveLength(expected);
    const guards = new Set(described.transitions.map((t) => t.guard).filter(Boolean));
    expect([...guards].sort()).toEqual(Object.keys(sessionMachine.implementations.guards).sort());
    const delays = described.transitions.filter((t) => t.event.startsWith('after ')).map((t) => t.event.slice('after '.length));
    expect([...new Set(delays)].sort()).toEqual(Object.keys(sessionMachine.implementations.delays).sort());
    expect(described.transitions).toContainEqual(expect.objectContaining({ source: 'relaying', event: 'CLIENT_CLOSED', target: 'draining', guard: 'responseInFlight' }));
    expect(described.transitions).toContainEqual(expect.objectContaining({ source: 'draining', event: 'after drainTimeout', target: 'closed' }));
    expect(described.transitions).toContainEqual(expect.objectContaining({ source: 'connecting', event: 'done dial', target: 'relaying' }));
  });

  it('--mermaid prints the diagram the README shows', async ({ expect }) => {
    const { code, stdout } = await runRelay(['machine', '--mermaid']);
    expect(code).toBe(0);
    const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
    const section = /<!-- machine:start -->\n```mermaid\n([\s\S]*?)\n```\n<!-- machine:end -->/.exec(readme);
    expect(section, 'the README has the machine section').not.toBeNull();
    expect(stdout.trimEnd()).toBe(toMermaid(sessionMachine));
    expect(stdout.trimEnd()).toBe(section![1]);
  });

  it('asks for --json or --mermaid', async ({ expect }) => {
    const { code, stderr } = await runRelay(['machine']);
    expect(code).toBe(2);
    expect(stderr).toContain('--json or --mermaid');
  });
});

describe('a database that does not answer', () => {
  it('stops the start with one line naming the ledger and where it is, without its password, exit code 1', async () => {
    const dir = mkdtempSync(join(scratch, 'dead-db-'));
    const { code, stdout, stderr } = await runRelay(['start'], { RELAY_DATA_DIR: join(dir, 'data'), PORT: '0', DATABASE_URL: 'postgres://relay:s3cret-pw@127.0.0.1:1/test' });
    expect(code).toBe(1);
    const lines = stderr.trimEnd().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^relay: ledger_unavailable: PostgreSQL at 127\.0\.0\.1:1\/test is unavailable/);
    expect(stderr + stdout).not.toContain('s3cret-pw');
    expect(stdout).not.toContain('listening on');
  });
});

/** A session through the spawned relay at `url`, opened and closed by its client; resolves with the relay's log line for its end. */
async function oneSession(relay: RelayProcess, url: string, key: string): Promise<LogLine> {
  const client = TestClient.connect(`${url}/v1/realtime?model=gpt-realtime`, { key });
  await client.next('session.created');
  client.close();
  await client.closedWith();
  return relay.waitForLog((l) => l.msg === 'session ended', 'the session end line');
}

describe('npm start', () => {
  it('says in its first log line that it relays to the simulator, listens on the port it prints, and stops on SIGTERM', async () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: { start: string } };
    const [program, ...args] = pkg.scripts.start.split(' ');
    expect(program).toBe('node');
    const relay = await spawnRelay({ args, dataDir: join(scratch, 'start-data'), env: { LOG_LEVEL: 'info' } });
    try {
      const listening = await relay.waitForLog((l) => l.msg?.startsWith('listening on ') === true, 'the listening line');
      expect(relay.logs[0]!.msg).toMatch(/relays to the built-in upstream simulator at ws:\/\/127\.0\.0\.1:\d+ \(no OPENAI_API_KEY is set\)/);
      const url = /listening on (ws:\/\/127\.0\.0\.1:(\d+))/.exec(listening.msg!);
      expect(url).not.toBeNull();
      expect(Number(url![2])).toBeGreaterThan(0);
      const key = relay.demoKey!;

      const health = await fetch(`${url![1]!.replace(/^ws/, 'http')}/healthz`);
      expect(health.status).toBe(200);
      await oneSession(relay, url![1]!, key);
    } finally {
      expect(await relay.stop('SIGTERM')).toEqual({ code: 0, signal: null });
    }
    // The terminal shows the demo key and nothing else.
    expect(relay.stderr()).toMatch(/^demo key \(shown once, not logged\): rk_\S+\n$/);
  });

  it('shows the demo key once on the terminal and writes it into no log line', async () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: { start: string } };
    const [, ...args] = pkg.scripts.start.split(' ');
    const relay = await spawnRelay({ args, dataDir: join(scratch, 'demo-key-data'), env: { LOG_LEVEL: 'debug' } });
    let key = '';
    try {
      key = relay.demoKey!;
      const listening = await relay.waitForLog((l) => l.msg?.startsWith('listening on ') === true, 'the listening line');
      // A session too, so that every line a key could slip into is written.
      await oneSession(relay, /ws:\/\/\S+/.exec(listening.msg!)![0], key);
    } finally {
      expect(await relay.stop('SIGTERM')).toEqual({ code: 0, signal: null });
    }
    expect(key).toMatch(/^rk_/);
    expect(relay.stderr().split(key)).toHaveLength(2);
    const logged = relay.logs.filter((l) => JSON.stringify(l).includes(key));
    expect(logged).toEqual([]);
    expect(relay.logs.find((l) => l.msg?.startsWith('demo key created') === true)).toMatchObject({ balance: '5.000000' });
  });

  it('with --inspect sends every session to the inspector at RELAY_INSPECT_URL', async () => {
    const inspector = new WebSocketServer({ host: '127.0.0.1', port: 0 });
    await once(inspector, 'listening');
    const received: Array<{ type: string; name?: string }> = [];
    inspector.on('connection', (socket) => socket.on('message', (data: Buffer) => received.push(JSON.parse(data.toString()))));
    const inspectUrl = `ws://127.0.0.1:${(inspector.address() as AddressInfo).port}`;
    let sessionId = '';
    const relay = await spawnRelay({ args: ['bin/relay.mjs', '--inspect'], dataDir: join(scratch, 'inspect-data'), env: { RELAY_INSPECT_URL: inspectUrl } });
    try {
      await relay.waitForLog((l) => l.msg?.includes(`Stately inspector at ${inspectUrl}`) === true, 'the inspector line');
      const listening = await relay.waitForLog((l) => l.msg?.startsWith('listening on ') === true, 'the listening line');
      const key = relay.demoKey!;
      sessionId = (await oneSession(relay, /ws:\/\/\S+/.exec(listening.msg!)![0], key)).sessionId as string;
    } finally {
      expect(await relay.stop('SIGTERM')).toEqual({ code: 0, signal: null });
      await new Promise<void>((resolve) => {
        for (const socket of inspector.clients) socket.terminate();
        inspector.close(() => resolve());
      });
    }
    expect(received.some((m) => m.type === '@xstate.actor' && m.name === sessionId)).toBe(true);
    expect(received.some((m) => m.type === '@xstate.snapshot')).toBe(true);
  });
});
