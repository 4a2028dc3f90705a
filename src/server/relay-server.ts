import { randomUUID } from 'node:crypto';
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { getRequestListener } from '@hono/node-server';
import { Hono } from 'hono';
import { WebSocketServer, type WebSocket } from 'ws';
import { createActor, type Actor, type InspectionEvent, type Observer } from 'xstate';
import { ERRORS, RelayError, errorBody } from '../errors.js';
import { hasEnded, sessionMachine, type SessionEvent, type SessionMachine } from '../machines/session.js';
import { truncateCloseReason } from '../protocol/close-codes.js';
import { sessionUpdateFor } from '../protocol/client-secret.js';
import { selectProtocol } from '../protocol/subprotocols.js';
import type { ClientAddressOptions } from './client-address.js';
import { bearer, handshake, type Handshake, type HandshakeEnv } from './handshake.js';
import { CallLink } from './call-link.js';
import { callRoutes, sessionIdOfCall } from './calls.js';
import { clientSecretRoutes } from './client-secrets.js';
import type { LiveLink } from './live-link.js';
import type { Admission, ClientSecretMinter, Gatekeeper, SessionMeter } from './ports.js';
import { acceptProxyProtocol } from './proxy-protocol.js';
import type { SessionPorts } from '../machines/session.js';
import { SessionRegistry } from './registry.js';
import { joinSideband } from './sip/call-join.js';
import { phoneCalls, type PhoneCallsOptions } from './sip/phone-calls.js';
import { SessionLink, type LinkTimings, type SessionObserver } from './session-link.js';
import type { FrameTranslator } from './translators.js';
import { routeUpgrades, type UpgradeEnv } from './upgrade.js';
import type { Upstream } from './upstream.js';

export interface RelayServerOptions {
  host: string;
  port: number;
  tls?: { cert: Buffer; key: Buffer };
  timings: LinkTimings & { drainTimeoutMs: number; maxSessionMs: number; headerTimeoutMs: number; shutdownTimeoutMs: number };
  maxPayloadBytes: number;
  allowedOrigins: string[];
  allowInsecureSubprotocolKey: boolean;
  /** Who may name the client (RELAY_TRUSTED_PROXIES), in which header, and whether their connections start with a PROXY protocol header. */
  clientAddresses?: ClientAddressOptions & { proxyProtocol: boolean };
  /** A trusted peer's connection was refused: it sent no valid PROXY protocol header. */
  proxyProtocolRefused?(peer: string, reason: string): void;
  gatekeeper: Gatekeeper;
  /** Serves `POST /v1/realtime/client_secrets` when given. */
  clientSecrets?: ClientSecretMinter;
  /** Upstreams that serve `model`, in the order they are tried. */
  upstreamsFor(model: string): Upstream[];
  translatorFor?(handshake: Handshake): FrameTranslator | undefined;
  observer?: SessionObserver;
  /** Lifecycle hooks for logs and metrics, never per frame. */
  sessionStarted?(link: LiveLink): void;
  /** Inspection of every session actor (Stately inspector); undefined costs nothing. */
  inspect?: Observer<InspectionEvent> | ((event: InspectionEvent) => void);
  /** Extra routes (health, admin, metrics) mounted on the same app. */
  routes?(app: Hono<UpgradeEnv>, relay: RelayServer): void;
  /** Ready means: accepting, and the ledger answers. */
  ready?(): Promise<boolean>;
  /** Incoming phone calls (SIP): the webhook, the routes and the tenants' call control. Without it, /v1/sip/webhook is not served. */
  phone?: Pick<PhoneCallsOptions, 'webhookSecret' | 'directory' | 'upstream' | 'statuses' | 'tenantTimeoutMs' | 'events'>;
  /** The session machine; by default `sessionMachine`. The model test runs altered copies to prove its replays can fail. */
  machine?: SessionMachine;
}

export interface RelayServer {
  readonly server: Server;
  readonly registry: SessionRegistry;
  readonly shuttingDown: boolean;
  url(): string;
  listen(): Promise<AddressInfo>;
  /** Stop accepting, drain and settle every session, then close. Resolves when done or the deadline passed. */
  shutdown(): Promise<{ drained: boolean }>;
  /** Close at once: every session is cancelled and sockets terminated after the close timeout. */
  close(): Promise<void>;
}

export function createRelayServer(options: RelayServerOptions): RelayServer {
  const registry = new SessionRegistry();
  let shuttingDown = false;
  const app = new Hono<UpgradeEnv>();
  const wss = new WebSocketServer({
    noServer: true,
    clientTracking: false,
    perMessageDeflate: false,
    maxPayload: options.maxPayloadBytes,
    handleProtocols: selectProtocol,
  });

  const timings = options.timings;
  // Every session's machine reads the same timings: one object for all of them.
  const machineTimings = { connectTimeoutMs: timings.connectTimeoutMs, drainTimeoutMs: timings.drainTimeoutMs, maxSessionMs: timings.maxSessionMs };

  /** Runs one session's machine, whatever its transport, until it has ended; then lets it go. */
  function runSession(link: LiveLink & SessionPorts, admission: Admission): Actor<SessionMachine> {
    const { sessionId } = link;
    const actor = createActor(options.machine ?? sessionMachine, {
      input: { sessionId, ports: link, timings: machineTimings },
      ...(options.inspect ? { inspect: options.inspect } : {}),
    });
    registry.add({ link, actor });
    options.sessionStarted?.(link);
    // The machine's `ended` is the one signal that a session is over: sockets closed, settlement written.
    const sessionOnEnded = actor.subscribe((snapshot) => {
      if (!hasEnded(snapshot)) return;
      sessionOnEnded.unsubscribe();
      actor.stop();
      if (snapshot.context.settlement) options.observer?.ended?.(link, snapshot.context.settlement);
      registry.remove(sessionId);
      admission.release();
    });
    actor.start();
    // Its handshake began before shutdown did: it is told at once, like every other session.
    if (shuttingDown) actor.send({ type: 'CANCEL', reason: 'shutdown' });
    return actor;
  }

  function startSession(client: WebSocket, shake: Handshake, admission: Admission, meter: SessionMeter, sessionId: string): void {
    const link = new SessionLink({
      sessionId,
      client,
      clientAddress: shake.attempt.ip,
      caller: admission.caller,
      model: admission.model,
      intent: admission.intent ?? shake.attempt.intent,
      upstreams: options.upstreamsFor(admission.model),
      meter,
      timings,
      translator: options.translatorFor?.(shake),
      observer: options.observer,
      firstFrame: admission.clientSecretSession ? (sessionUpdateFor(admission.clientSecretSession) ?? undefined) : undefined,
    });
    runSession(link, admission);
  }

  function tellBrowser(client: WebSocket, error: RelayError): void {
    client.on('error', () => undefined);
    client.send(error.toEvent(`event_relay_${randomUUID()}`));
    client.close(error.closeCode, truncateCloseReason(error.code));
    const timer = setTimeout(() => client.terminate(), timings.closeTimeoutMs);
    client.once('close', () => clearTimeout(timer));
  }

  function findCall(callId: string): { link: CallLink; actor: Actor<SessionMachine> } | undefined {
    const sessionId = sessionIdOfCall(callId);
    const live = sessionId === null ? undefined : registry.get(sessionId);
    return live && live.link instanceof CallLink ? { link: live.link, actor: live.actor } : undefined;
  }

  const phone = options.phone
    ? phoneCalls({ ...options.phone, gatekeeper: options.gatekeeper, timings, observer: options.observer, isShuttingDown: () => shuttingDown, run: runSession, findCall })
    : null;

  const realtime = new Hono<HandshakeEnv>();
  // `?call_id=`: a caller joins the events of its own live call, as a sideband of it; never charged (the call's session is).
  realtime.get('/', async (c, next) => {
    const callId = c.req.query('call_id');
    if (callId === undefined) return next();
    if ((c.req.header('upgrade') ?? '').toLowerCase() !== 'websocket') return c.json(errorBody('upgrade_required'), ERRORS.upgrade_required.status);
    const key = bearer(c.req.header('authorization')) ?? c.req.header('api-key');
    if (!key) return c.json(errorBody('missing_api_key'), 401);
    const caller = options.gatekeeper.identify ? await options.gatekeeper.identify(key).catch(() => undefined) : undefined;
    if (caller === undefined) return c.json(errorBody('billing_unavailable'), 503);
    if (caller === null) return c.json(errorBody('invalid_api_key'), 401);
    const live = findCall(callId);
    // Another key's call is not told apart from no call at all.
    if (!live || live.link.caller.keyId !== caller.keyId || !live.link.dialed) return c.json(errorBody('call_not_found'), 404);
    const sideband = live.link.call.sidebandRequest();
    c.env.accept = (client) => joinSideband(client, sideband, timings.closeTimeoutMs);
    return c.body(null, 200);
  });
  realtime.get(
    '/',
    handshake({
      gatekeeper: options.gatekeeper,
      allowInsecureSubprotocolKey: options.allowInsecureSubprotocolKey,
      allowedOrigins: options.allowedOrigins,
      clientAddresses: options.clientAddresses,
      isShuttingDown: () => shuttingDown,
    }),
    async (c) => {
      const shake = c.get('handshake');
      const refusal = c.get('refusal');
      if (refusal) {
        c.env.accept = (client) => tellBrowser(client, refusal);
        return c.body(null, 200);
      }
      const admission = c.get('admission');
      const sessionId = `sess_${randomUUID().replaceAll('-', '')}`;
      let meter;
      try {
        // The session row exists before the 101, so a crash from here on leaves something to recover.
        meter = await admission.openMeter({ sessionId, transport: 'websocket', caller: admission.caller, model: admission.model, intent: admission.intent ?? shake.attempt.intent, startedAt: new Date() });
      } catch (error) {
        admission.release();
        const relayError = error instanceof RelayError ? error : new RelayError('billing_unavailable', undefined, { cause: error });
        if (shake.browser) {
          c.env.accept = (client) => tellBrowser(client, relayError);
          return c.body(null, 200);
        }
        return c.json(relayError.toBody(), relayError.status as 503);
      }
      const opened = meter;
      /** Set once: by the upgrade (the session starts) or by the connection's end (the session is settled empty). */
      let decided = false;
      // If the client vanishes before the 101, nothing will ever start: settle the empty session.
      const socket = c.env.incoming.socket;
      const abandon = () => {
        if (decided) return;
        decided = true;
        admission.release();
        void opened.settle(emptySummary(sessionId, admission)).catch(() => undefined);
      };
      c.env.accept = (client) => {
        decided = true;
        // The session's machine owns its ending from here: the listener (and what it holds) goes.
        socket.off('close', abandon);
        startSession(client, shake, admission, opened, sessionId);
      };
      // It may already be gone (closed while the ledger was answering): then 'close' has been emitted.
      if (socket.destroyed) abandon();
      else socket.once('close', abandon);
      return c.body(null, 200);
    },
  );
  app.route('/v1/realtime', realtime as unknown as Hono<UpgradeEnv>);
  app.route(
    '/v1/realtime/calls',
    callRoutes({
      gatekeeper: options.gatekeeper,
      allowedOrigins: options.allowedOrigins,
      clientAddresses: options.clientAddresses,
      isShuttingDown: () => shuttingDown,
      upstreamsFor: options.upstreamsFor,
      timings,
      observer: options.observer,
      run: runSession,
      findCall,
    }),
  );
  if (phone) {
    app.route('/v1/realtime/calls', phone.control);
    app.route('/v1/sip/webhook', phone.webhook);
  }
  if (options.clientSecrets) app.route('/v1/realtime/client_secrets', clientSecretRoutes(options.clientSecrets));
  app.get('/healthz', (c) => c.json({ status: 'ok' }));
  app.get('/readyz', async (c) => {
    if (shuttingDown) return c.json({ status: 'shutting_down' }, 503);
    const ready = options.ready ? await options.ready().catch(() => false) : true;
    return ready ? c.json({ status: 'ready' }) : c.json({ status: 'not_ready' }, 503);
  });

  const listener = getRequestListener(app.fetch);
  // Slow or stalled request headers (slowloris), upgrades included, are dropped after
  // headerTimeoutMs. Node checks for them every connectionsCheckingInterval (30 s by
  // default), which would let a short timeout overrun by that much.
  const httpOptions = {
    headersTimeout: timings.headerTimeoutMs,
    requestTimeout: Math.max(timings.headerTimeoutMs, 30_000),
    connectionsCheckingInterval: Math.min(30_000, Math.max(50, Math.floor(timings.headerTimeoutMs / 4))),
  };
  const server: Server = options.tls
    ? (createHttpsServer({ cert: options.tls.cert, key: options.tls.key, ...httpOptions }, listener) as unknown as Server)
    : createHttpServer(httpOptions, listener);
  routeUpgrades(server, app, wss);
  const clientAddresses = options.clientAddresses;
  const proxyProtocol = clientAddresses?.proxyProtocol
    ? acceptProxyProtocol(server, { trustedProxies: clientAddresses.trustedProxies, headerTimeoutMs: timings.headerTimeoutMs, refused: options.proxyProtocolRefused })
    : null;
  const stopAccepting = () => closeServer(server, () => proxyProtocol?.destroyPending());

  const relay: RelayServer = {
    server,
    registry,
    get shuttingDown() {
      return shuttingDown;
    },
    url() {
      const address = server.address() as AddressInfo;
      const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
      return `${options.tls ? 'wss' : 'ws'}://${host}:${address.port}`;
    },
    listen() {
      return new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(options.port, options.host, () => {
          server.off('error', reject);
          resolve(server.address() as AddressInfo);
        });
      });
    },
    async shutdown() {
      shuttingDown = true;
      await phone?.close();
      registry.cancelAll('shutdown');
      let deadline: NodeJS.Timeout | undefined;
      const drained = await Promise.race([
        registry.empty().then(() => true),
        new Promise<boolean>((resolve) => {
          deadline = setTimeout(() => resolve(false), timings.shutdownTimeoutMs);
        }),
      ]);
      clearTimeout(deadline);
      const closed = stopAccepting();
      // Past the deadline the sockets still draining are not waited for (server.close would
      // wait for every upgraded socket): the process leaves, and the next start's recovery
      // settles those sessions from the charges already written.
      if (drained) await closed;
      return { drained };
    },
    async close() {
      shuttingDown = true;
      await phone?.close();
      registry.cancelAll('shutdown');
      for (const { actor } of registry.active()) actor.send({ type: 'ERROR', source: 'relay', error: { code: 'server_shutting_down', message: 'The relay is shutting down.', closeCode: ERRORS.server_shutting_down.close } } satisfies SessionEvent);
      await registry.empty();
      await stopAccepting();
    },
  };
  options.routes?.(app, relay);
  return relay;
}

function closeServer(server: Server, dropPending: () => void): Promise<void> {
  return new Promise((resolve) => {
    if (!server.listening) return resolve();
    server.close(() => resolve());
    server.closeAllConnections();
    // Connections still waiting for their PROXY header are not HTTP's yet: closeAllConnections does not see them.
    dropPending();
  });
}

function emptySummary(sessionId: string, admission: HandshakeEnv['Variables']['admission']) {
  const now = new Date();
  return {
    sessionId,
    transport: 'websocket' as const,
    caller: admission.caller,
    model: admission.model,
    servedModel: null,
    upstream: null,
    startedAt: now,
    endedAt: now,
    endReason: 'handshake_aborted',
    drain: null,
    clientCloseCode: null,
    upstreamCloseCode: null,
    framesIn: 0,
    framesOut: 0,
    bytesIn: 0,
    bytesOut: 0,
    usage: [],
  };
}
