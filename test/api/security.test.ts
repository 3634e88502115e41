/**
 * API keys, rate limiting and size limits of the built coordinator, from outside: 401 and 429 are
 * problem+json (429 with Retry-After), the probes, /metrics and /docs stay open, protocol messages
 * are never rate-limited, oversized fields are a 400 naming the field, and nothing refused changes
 * anything.
 */
import { ExecutionContext } from '@nestjs/common';
import { randomUUID } from 'node:crypto';
import { rateLimitOptions } from '../../apps/coordinator/api/rate-limit.guard';
import { MAX_METADATA_BYTES, MAX_PAYLOAD_BYTES } from '../../apps/coordinator/api/schemas';
import { loadConfig } from '../../apps/coordinator/config/config';
import { api, startCoordinator, TestCoordinator } from '../support/coordinator';
import { dropCreatedDatabases, query } from '../support/postgres';
import { eventually } from '../support/processes';

jest.setTimeout(90_000);

const RUN = `txsec_${randomUUID().slice(0, 8)}`;
const KEYS = ['first-api-key-0123456789', 'second-api-key-0123456789'];
const started: TestCoordinator[] = [];

afterAll(async () => {
  await Promise.all(started.map((c) => c.stop()));
  await dropCreatedDatabases();
});

async function coordinator(name: string, env: Record<string, string>): Promise<TestCoordinator> {
  const c = await startCoordinator({ transport: 'http', database: `${RUN}_${name}`, env });
  started.push(c);
  return c;
}

const isProblem = (r: { status: number; headers: Headers; body: any }, status: number, slug: string) => {
  expect(r.status).toBe(status);
  expect(r.headers.get('content-type')).toMatch(/^application\/problem\+json/);
  expect(r.body).toMatchObject({ type: `urn:txcoord:problem:${slug}`, status, title: expect.any(String), detail: expect.any(String) });
};

describe('API keys (COORDINATOR_API_KEYS)', () => {
  let c: TestCoordinator;
  const count = async () => (await api(c.url, 'GET', '/v1/transactions?limit=200', undefined, { authorization: `Bearer ${KEYS[0]}` })).body.items.length;

  beforeAll(async () => {
    c = await coordinator('auth', { COORDINATOR_API_KEYS: KEYS.join(',') });
  });

  it.each([
    ['no Authorization header', {}],
    ['a wrong key', { authorization: 'Bearer wrong-api-key-0123456789' }],
    ['a key one character short', { authorization: `Bearer ${KEYS[0].slice(0, -1)}` }],
    ['a key with a character more', { authorization: `Bearer ${KEYS[0]}x` }],
    ['a key without "Bearer "', { authorization: KEYS[0] }],
    ['Basic credentials', { authorization: `Basic ${Buffer.from(`u:${KEYS[0]}`).toString('base64')}` }],
    ['an empty bearer', { authorization: 'Bearer ' }],
  ])('answers 401 problem+json with %s, on every /v1 route, changing nothing', async (_what, headers: Record<string, string>) => {
    const before = await count();
    for (const [method, path, body] of [
      ['GET', '/v1/transactions', undefined],
      ['POST', '/v1/transactions', { participants: [{ name: 'inventory' }] }],
      ['GET', `/v1/transactions/${randomUUID()}`, undefined],
      ['POST', `/v1/transactions/${randomUUID()}/commit`, undefined],
      ['POST', '/v1/messages', '{}'],
      ['GET', '/v1/admin/audit', undefined],
    ] as const) {
      const r = await api(c.url, method, path, body, headers);
      isProblem(r, 401, 'unauthorized');
      expect(r.headers.get('www-authenticate')).toBe('Bearer');
    }
    expect(await count()).toBe(before);
  });

  it('accepts each configured key', async () => {
    for (const key of KEYS) {
      const r = await api(c.url, 'POST', '/v1/transactions', {}, { authorization: `Bearer ${key}` });
      expect(r.status).toBe(201);
    }
  });

  it('leaves the probes, /metrics and /docs open', async () => {
    for (const path of ['/health/live', '/health/ready', '/metrics', '/docs-json', '/docs']) {
      expect({ path, status: (await fetch(c.url + path)).status }).toEqual({ path, status: 200 });
    }
  });

  it('logs each request answered, and never a key', async () => {
    await api(c.url, 'GET', '/v1/transactions?limit=3', undefined, { authorization: `Bearer ${KEYS[1]}` });
    const line = await eventually(
      async () => c.proc.output().split('\n').find((l) => l.includes('"url":"/v1/transactions?limit=3"')),
      (l) => l !== undefined, 5_000, 'the request\'s access log line',
    );
    expect(JSON.parse(line!)).toMatchObject({
      msg: 'request completed',
      req: { method: 'GET', headers: { authorization: '[Redacted]' } },
      res: { statusCode: 200 },
    });
    for (const key of [...KEYS, 'wrong-api-key-0123456789']) expect(c.proc.output()).not.toContain(key);
  });
});

describe('rate limit (TX_RATE_LIMIT_PER_MINUTE)', () => {
  let c: TestCoordinator;
  const LIMIT = 12;

  beforeAll(async () => {
    c = await coordinator('ratelimit', { TX_RATE_LIMIT_PER_MINUTE: String(LIMIT) });
  });

  it('answers 429 problem+json with Retry-After past the limit, on reads and writes alike', async () => {
    const remaining: number[] = [];
    for (let i = 0; i < LIMIT; i++) {
      const r = await api(c.url, 'GET', '/v1/transactions');
      expect(r.status).toBe(200);
      remaining.push(Number(r.headers.get('x-ratelimit-remaining')));
    }
    expect(remaining).toEqual(Array.from({ length: LIMIT }, (_, i) => LIMIT - 1 - i));

    const read = await api(c.url, 'GET', '/v1/transactions');
    isProblem(read, 429, 'rate-limited');
    const retryAfter = Number(read.headers.get('retry-after'));
    expect(Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= 60).toBe(true);

    const write = await api(c.url, 'POST', '/v1/transactions', {});
    isProblem(write, 429, 'rate-limited');
    expect(write.headers.get('retry-after')).toMatch(/^\d+$/);
    // The refused begin left nothing in the decision log.
    expect(await query(c.env.DATABASE_URL, 'SELECT count(*)::int AS n FROM tx_transaction')).toEqual([{ n: 0 }]);
  });

  it('does not limit protocol messages, the probes, /metrics or /docs', async () => {
    for (let i = 0; i < 3; i++) {
      // An unreadable message: 400 from its reader, not 429.
      const m = await api(c.url, 'POST', '/v1/messages', '{"v":1}');
      expect(m.status).toBe(400);
      for (const path of ['/health/live', '/health/ready', '/metrics', '/docs-json']) {
        expect({ path, status: (await fetch(c.url + path)).status }).toEqual({ path, status: 200 });
      }
    }
  });

  it('is off with 0, and 6000 per minute by default', () => {
    type Options = { skipIf: (context: ExecutionContext) => boolean; throttlers: { limit: number; ttl: number }[] };
    const optionsFor = (env: Record<string, string>) => rateLimitOptions(loadConfig(env)) as unknown as Options;
    const context = {} as ExecutionContext;
    expect(optionsFor({ TX_RATE_LIMIT_PER_MINUTE: '0' }).skipIf(context)).toBe(true);
    const byDefault = optionsFor({});
    expect(byDefault.skipIf(context)).toBe(false);
    expect(byDefault.throttlers).toEqual([expect.objectContaining({ limit: 6000, ttl: 60_000 })]);
  });
});

describe('size limits', () => {
  let c: TestCoordinator;

  beforeAll(async () => {
    c = await coordinator('limits', { TX_BODY_LIMIT_BYTES: String(256 * 1024) });
  });

  const text = (bytes: number) => 'x'.repeat(bytes);

  it('refuses a payload or metadata over its field limit with 400 naming the field', async () => {
    const bigPayload = await api(c.url, 'POST', '/v1/transactions', { participants: [{ name: 'a', payload: { blob: text(MAX_PAYLOAD_BYTES) } }] });
    isProblem(bigPayload, 400, 'invalid-request');
    expect(bigPayload.body.errors).toEqual([{ field: 'body.participants.0.payload', message: `must be at most ${MAX_PAYLOAD_BYTES} bytes of JSON` }]);

    const bigMetadata = await api(c.url, 'POST', '/v1/transactions', { metadata: { blob: text(MAX_METADATA_BYTES) } });
    isProblem(bigMetadata, 400, 'invalid-request');
    expect(bigMetadata.body.errors).toEqual([{ field: 'body.metadata', message: `must be at most ${MAX_METADATA_BYTES} bytes of JSON` }]);

    const tx = (await api(c.url, 'POST', '/v1/transactions', {})).body;
    const enlist = await api(c.url, 'POST', `/v1/transactions/${tx.id}/participants`, { name: 'a', payload: { blob: text(MAX_PAYLOAD_BYTES) } });
    isProblem(enlist, 400, 'invalid-request');
    expect((await api(c.url, 'GET', `/v1/transactions/${tx.id}`)).body.participants).toEqual([]);

    // Just under the limits is fine.
    const fits = await api(c.url, 'POST', '/v1/transactions', {
      participants: [{ name: 'a', payload: { blob: text(MAX_PAYLOAD_BYTES - 20) } }],
      metadata: { blob: text(MAX_METADATA_BYTES - 20) },
    });
    expect(fits.status).toBe(201);
  });

  it('refuses a body over TX_BODY_LIMIT_BYTES with 413', async () => {
    const r = await api(c.url, 'POST', '/v1/transactions', { metadata: { blob: text(300 * 1024) } });
    isProblem(r, 413, 'body-too-large');
  });
});
