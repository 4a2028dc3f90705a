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
});
