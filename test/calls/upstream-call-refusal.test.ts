import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { RelayError } from '../../src/errors.js';
import type { Upstream } from '../../src/server/upstream.js';
import { UpstreamCall } from '../../src/server/upstream-call.js';

const UPSTREAM_KEY = 'sk-proj-upstreamSecret0123456789';

/** An upstream's calls endpoint that refuses every offer with `status` and the body `answer` builds from the request. */
async function refusingUpstream(status: number, answer: (authorization: string) => string): Promise<{ server: Server; upstream: Upstream }> {
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', () => res.writeHead(status, { 'content-type': 'application/json' }).end(answer(req.headers.authorization ?? '')));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const upstream: Upstream = { name: 'openai', kind: 'openai', baseUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`, apiKey: UPSTREAM_KEY, models: [], deployments: {}, priority: 0 };
  return { server, upstream };
}

async function placeRefused(upstream: Upstream): Promise<RelayError> {
  const call = new UpstreamCall('gpt-realtime', { sdp: 'v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n', session: { voice: 'nope' } });
  return call.place([upstream], new AbortController().signal).then(
    () => {
      throw new Error('the call was placed');
    },
    (error: RelayError) => error,
  );
}

describe('an upstream refusing a call', () => {
  let server: Server | undefined;
  afterEach(async () => {
    await new Promise((resolve) => server?.close(resolve));
  });

  it('reports a refusal of the caller\'s own input as the caller\'s error, with the param, and without the relay\'s key or the upstream\'s ids', async () => {
    const refusing = await refusingUpstream(400, (authorization) =>
      JSON.stringify({ error: { type: 'invalid_request_error', code: 'invalid_value', param: 'session.voice', message: `Invalid value: 'nope' (request req_abc123def456, key ${authorization.slice(7)}, session sess_C0ffee1234).` } }),
    );
    server = refusing.server;
    const error = await placeRefused(refusing.upstream);
    const body = error.toBody();
    expect(error.status).toBe(400);
    expect(body.error).toMatchObject({ code: 'upstream_invalid_request', type: 'invalid_request_error', param: 'session.voice' });
    expect(body.error.message).toContain("Invalid value: 'nope'");
    expect(JSON.stringify(body)).not.toContain('upstreamSecret');
    expect(JSON.stringify(body)).not.toMatch(/req_abc|sess_C0ffee/);
  });

  it('keeps a refusal that is not about the caller\'s input a server error', async () => {
    const refusing = await refusingUpstream(400, () => 'Bad Request');
    server = refusing.server;
    const error = await placeRefused(refusing.upstream);
    expect(error.toBody().error).toMatchObject({ code: 'upstream_rejected', type: 'server_error' });
  });

  it('does not place the call elsewhere once an upstream has it: an answer without SDP fails the call, which is then hung up where it exists', async () => {
    const hungUp: string[] = [];
    const answering = createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        if (req.url?.endsWith('/hangup')) {
          hungUp.push(req.url);
          res.writeHead(200).end();
        } else res.writeHead(201, { location: '/v1/realtime/calls/rtc_upstream0001' }).end();
      });
    });
    await new Promise<void>((resolve) => answering.listen(0, '127.0.0.1', resolve));
    server = answering;
    const first: Upstream = { name: 'first', kind: 'openai', baseUrl: `http://127.0.0.1:${(answering.address() as AddressInfo).port}/v1`, apiKey: UPSTREAM_KEY, models: [], deployments: {}, priority: 0 };
    let offersElsewhere = 0;
    const second = await refusingUpstream(201, () => {
      offersElsewhere++;
      return 'v=0\r\n';
    });
    try {
      const call = new UpstreamCall('gpt-realtime', { sdp: 'v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n', session: {} });
      const error = await call.place([first, second.upstream], new AbortController().signal).then(
        () => null,
        (failure: RelayError) => failure,
      );
      expect(error?.code).toBe('upstream_error');
      expect(offersElsewhere).toBe(0);
      await call.hangUp(2_000);
      expect(hungUp).toEqual(['/v1/realtime/calls/rtc_upstream0001/hangup']);
    } finally {
      await new Promise((resolve) => second.server.close(resolve));
    }
  });
});
