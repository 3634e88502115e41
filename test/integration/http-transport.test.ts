/**
 * HttpTransport against local node:http servers: routing, signatures, the bounded retry, the
 * circuit breaker, the shared receive path, and the participant's own endpoint.
 */
import { randomUUID } from 'node:crypto';
import { createServer, IncomingMessage, Server } from 'node:http';
import { AddressInfo } from 'node:net';
import { encodeMessage, ProtocolMessage, sign } from '../../libs/protocol';
import { HttpTransport, HttpTransportOptions, TransportLogger } from '../../libs/transport';
import { freePort } from '../support/processes';

const SECRET = 'http-transport-secret-0123';

interface Seen {
  method: string;
  path: string;
  headers: IncomingMessage['headers'];
  body: Buffer;
  /** The client's port: one per connection. */
  port: number;
}

/**
 * A receiver that records every request and answers with `reply` (default 202), after `delayMs`
 * if given, never with `never`; it counts the requests it was answering at once.
 */
async function receiver(reply: (seen: Seen, n: number) => { status: number; body?: string; delayMs?: number; never?: true } = () => ({ status: 202 })) {
  const seen: Seen[] = [];
  let answering = 0;
  let mostAtOnce = 0;
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const s = { method: req.method!, path: req.url!, headers: req.headers, body: Buffer.concat(chunks), port: req.socket.remotePort! };
      seen.push(s);
      const r = reply(s, seen.length);
      if (r.never) return;
      mostAtOnce = Math.max(mostAtOnce, ++answering);
      const answer = () => {
        answering--;
        res.writeHead(r.status, { 'content-type': 'application/problem+json' }).end(r.body ?? '{}');
      };
      if (r.delayMs) setTimeout(answer, r.delayMs).unref();
      else answer();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    seen,
    stats: () => ({ posts: seen.length, mostAtOnce, connections: new Set(seen.map((x) => x.port)).size }),
    close: () => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }),
  };
}

function recordingLogger() {
  const lines: { level: string; msg?: string; obj: object }[] = [];
  const logger: TransportLogger = {
    info: (obj, msg) => lines.push({ level: 'info', msg, obj }),
    warn: (obj, msg) => lines.push({ level: 'warn', msg, obj }),
    error: (obj, msg) => lines.push({ level: 'error', msg, obj }),
  };
  return { logger, lines };
}

const base = () => ({ v: 1 as const, txId: randomUUID(), protocol: '2pc' as const, sentAt: new Date().toISOString() });
const prepare = (participant: string): ProtocolMessage => ({ ...base(), type: 'prepare', participant, deadline: new Date(Date.now() + 60_000).toISOString(), payload: { sku: 'A1' } });
const vote = (participant: string): ProtocolMessage => ({ ...base(), type: 'vote', participant, vote: 'yes' });

const transports: HttpTransport[] = [];
const make = (o: HttpTransportOptions) => {
  const t = new HttpTransport({ retryDelayMs: 10, ...o });
  transports.push(t);
  return t;
};

afterEach(async () => {
  await Promise.all(transports.splice(0).map((t) => t.stop()));
});

describe('HttpTransport sending', () => {
  it('posts each message alone, signed, to the route or the static URL, and the key only to the coordinator', async () => {
    const a = await receiver();
    const b = await receiver();
    const coord = await receiver();
    const t = make({ role: 'coordinator', participantUrls: new Map([['b', `${b.url}/`], ['a', 'http://127.0.0.1:1']]), secret: SECRET, apiKey: 'k'.repeat(20), coordinatorUrl: coord.url });
    const [pa, pb1, pb2] = [prepare('a'), prepare('b'), { ...prepare('b'), type: 'commit' } as ProtocolMessage];
    await t.send([pa, pb1, pb2], new Map([['a', a.url]])); // the route wins over the static map
    expect(a.seen.map((s) => s.path)).toEqual(['/tx/messages']);
    expect(b.seen.map((s) => JSON.parse(String(s.body)).type)).toEqual(['prepare', 'commit']); // in order
    for (const s of [...a.seen, ...b.seen]) {
      expect(s.method).toBe('POST');
      expect(s.headers['content-type']).toBe('application/json');
      expect(s.headers['tx-signature']).toBe(sign(s.body, SECRET));
      expect(s.headers.authorization).toBeUndefined();
    }
    expect(a.seen[0].body.equals(encodeMessage(pa))).toBe(true);

    const p = make({ role: 'participant', coordinatorUrl: `${coord.url}/`, apiKey: 'k'.repeat(20), secret: SECRET });
    await p.send([vote('a')]);
    expect(coord.seen).toHaveLength(1);
    expect(coord.seen[0]).toMatchObject({ path: '/v1/messages', headers: { authorization: `Bearer ${'k'.repeat(20)}` } });
    await Promise.all([a.close(), b.close(), coord.close()]);
  });

  it('rejects when a participant has no URL, after sending the others', async () => {
    const a = await receiver();
    const t = make({ role: 'coordinator' });
    await expect(t.send([prepare('a'), prepare('ghost')], new Map([['a', a.url]]))).rejects.toThrow(
      /no URL for participant ghost \(enlist it with a url, or list it in TX_PARTICIPANT_URLS\)/,
    );
    expect(a.seen).toHaveLength(1);
    await a.close();
  });

  it('tries again after 503 and succeeds; does not retry a 400 and says why', async () => {
    const flaky = await receiver((_s, n) => (n < 3 ? { status: 503 } : { status: 202 }));
    const t = make({ role: 'coordinator' });
    await t.send([prepare('a')], new Map([['a', flaky.url]]));
    expect(flaky.seen).toHaveLength(3);

    const strict = await receiver(() => ({ status: 400, body: JSON.stringify({ status: 400, detail: 'Unreadable message: bad signature.' }) }));
    await expect(t.send([prepare('a')], new Map([['a', strict.url]]))).rejects.toThrow(/answered 400: Unreadable message: bad signature/);
    expect(strict.seen).toHaveLength(1);
    await Promise.all([flaky.close(), strict.close()]);
  });

  it('gives up within the delivery budget when the receiver does not answer', async () => {
    const silent = await receiver(() => ({ status: 202, delayMs: 5000 }));
    const t = make({ role: 'coordinator', requestTimeoutMs: 300, deliveryBudgetMs: 800 });
    const started = Date.now();
    await expect(t.send([prepare('a')], new Map([['a', silent.url]]))).rejects.toThrow(/no answer in time/);
    const took = Date.now() - started;
    expect(took).toBeLessThan(1500);
    expect(silent.seen.length).toBeGreaterThanOrEqual(2);
    await silent.close();
  });

  it('opens the breaker after repeated failures, fails fast, then probes and closes', async () => {
    const { logger, lines } = recordingLogger();
    const port = await freePort(); // nothing listens here yet
    const url = `http://127.0.0.1:${port}`;
    const t = make({ role: 'coordinator', logger, breakerVolumeThreshold: 4, breakerResetMs: 300 });
    const route = new Map([['a', url]]);
    await expect(t.send([prepare('a')], route)).rejects.toThrow(/ECONNREFUSED/);
    await expect(t.send([prepare('a')], route)).rejects.toThrow(/circuit breaker open/);
    expect(lines.find((l) => l.msg === 'circuit breaker opened: failing fast')?.obj).toMatchObject({ url: `${url}/tx/messages` });
    const started = Date.now();
    await expect(t.send([prepare('a')], route)).rejects.toThrow(/circuit breaker open/);
    expect(Date.now() - started).toBeLessThan(50);

    // The destination comes up; after the reset time one probe goes through and closes the breaker.
    const server = createServer((_req, res) => res.writeHead(202).end('{}'));
    await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
    await new Promise((r) => setTimeout(r, 350));
    expect(lines.some((l) => l.msg?.startsWith('circuit breaker half-open'))).toBe(true);
    await t.send([prepare('a')], route);
    expect(lines.some((l) => l.msg?.startsWith('circuit breaker closed'))).toBe(true);
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });
});

describe('HttpTransport under load', () => {
  it('keeps at most connectionsPerDestination posts under way to one URL, on kept-alive connections; the rest wait their turn', async () => {
    const r = await receiver(() => ({ status: 202, delayMs: 30 }));
    const t = make({ role: 'coordinator', connectionsPerDestination: 3 });
    const route = new Map([['a', r.url]]);
    await Promise.all(Array.from({ length: 12 }, () => t.send([prepare('a')], route)));
    expect(r.stats()).toEqual({ posts: 12, mostAtOnce: 3, connections: 3 });
    await t.stop();
    await r.close();
  });

  it('fails a post that found no free connection within the budget with that reason, and its breaker stays closed', async () => {
    const { logger, lines } = recordingLogger();
    const r = await receiver(() => ({ status: 202, delayMs: 400 }));
    const t = make({ role: 'coordinator', logger, connectionsPerDestination: 1, deliveryBudgetMs: 100, breakerVolumeThreshold: 2 });
    const route = new Map([['a', r.url]]);
    const results = await Promise.allSettled(Array.from({ length: 6 }, () => t.send([prepare('a')], route)));
    expect(results.filter((x) => x.status === 'fulfilled')).toHaveLength(1);
    for (const x of results.filter((x) => x.status === 'rejected')) {
      expect(String((x as PromiseRejectedResult).reason)).toMatch(/no free connection within the delivery budget \(1 posts to it under way\)/);
    }
    expect(r.stats().posts).toBe(1); // the others were never sent
    expect(lines.some((l) => l.msg === 'circuit breaker opened: failing fast')).toBe(false);
    await t.stop();
    await r.close();
  });

  it('does not open the breaker on timeouts while the destination answers other posts, and opens it when it answers nothing for a window', async () => {
    const { logger, lines } = recordingLogger();
    const opened = () => lines.some((l) => l.msg === 'circuit breaker opened: failing fast');
    const options = { role: 'coordinator' as const, logger, requestTimeoutMs: 100, attempts: 1, breakerVolumeThreshold: 2, breakerWindowMs: 400 };

    // Slow, not down: every other post gets no answer in time, the rest are answered.
    const slow = await receiver((_s, n) => ({ status: 202, delayMs: n % 2 ? 300 : 5 }));
    const t = make(options);
    const toSlow = new Map([['a', slow.url]]);
    const outcomes = [];
    for (let i = 0; i < 8; i++) outcomes.push(await t.send([prepare('a')], toSlow).then(() => 'sent', (err: Error) => err.message));
    expect(outcomes.filter((o) => /no answer in time/.test(o))).toHaveLength(4);
    expect(outcomes.filter((o) => o === 'sent')).toHaveLength(4);
    expect(opened()).toBe(false);

    // Silent: once a whole window has passed with no answer at all, its timeouts count.
    const silent = await receiver(() => ({ status: 202, never: true }));
    const toSilent = new Map([['a', silent.url]]);
    const started = Date.now();
    while (!opened() && Date.now() - started < 5000) await t.send([prepare('a')], toSilent).catch(() => undefined);
    expect(opened()).toBe(true);
    expect(Date.now() - started).toBeGreaterThanOrEqual(400); // not within the first window
    await expect(t.send([prepare('a')], toSilent)).rejects.toThrow(/circuit breaker open/);
    await t.stop();
    await slow.close();
    await silent.close();
  });
});

describe('HttpTransport receiving', () => {
  it('hands a readable message over and answers 202 at once; refuses unreadable ones with the reason', async () => {
    const t = make({ role: 'coordinator', secret: SECRET });
    expect(await t.receive(Buffer.from('{}'))).toMatchObject({ status: 503 }); // not started
    let release!: () => void;
    const got: ProtocolMessage[] = [];
    await t.start(async (m, envelope) => {
      got.push(m);
      expect(envelope.key).toBe(m.txId);
      await new Promise<void>((r) => (release = r)); // a slow handler does not hold the answer
    });
    const m = vote('a');
    const value = encodeMessage(m);
    expect(await t.receive(value, sign(value, SECRET))).toEqual({ status: 202 });
    await new Promise((r) => setImmediate(r));
    expect(got).toEqual([m]);
    release();
    expect(await t.receive(value)).toEqual({ status: 400, error: 'missing signature' });
    expect(await t.receive(value, sign(value, 'another-secret-000000'))).toEqual({ status: 400, error: 'bad signature' });
    const garbage = Buffer.from('not json');
    expect(await t.receive(garbage, sign(garbage, SECRET))).toEqual({ status: 400, error: 'value is not JSON' });
    expect(got).toHaveLength(1);
  });

  it('logs a failing handler and goes on', async () => {
    const { logger, lines } = recordingLogger();
    const t = make({ role: 'coordinator', logger });
    await t.start(async () => { throw new Error('database down'); });
    expect(await t.receive(encodeMessage(vote('a')))).toEqual({ status: 202 });
    await new Promise((r) => setTimeout(r, 10));
    expect(lines.find((l) => l.level === 'warn')?.msg).toMatch(/handler failed/);
  });

  it('serves a participant endpoint: POST /tx/messages, GET /health, problem JSON otherwise', async () => {
    const coord = await receiver();
    const port = await freePort();
    const p = make({ role: 'participant', coordinatorUrl: coord.url, listen: { host: '127.0.0.1', port, limitBytes: 2048 } });
    const got: ProtocolMessage[] = [];
    await p.start(async (m) => { got.push(m); });
    const c = make({ role: 'coordinator' });
    const m = prepare('inventory');
    await c.send([m], new Map([['inventory', `http://127.0.0.1:${port}`]]));
    await new Promise((r) => setTimeout(r, 10));
    expect(got).toEqual([m]);

    const at = (path: string, init?: RequestInit) => fetch(`http://127.0.0.1:${port}${path}`, init);
    expect((await at('/health')).status).toBe(200);
    const bad = await at('/tx/messages', { method: 'POST', body: 'garbage' });
    expect(bad.status).toBe(400);
    expect(bad.headers.get('content-type')).toBe('application/problem+json');
    expect(await bad.json()).toMatchObject({ status: 400, title: 'Bad Request', detail: 'Unreadable message: value is not JSON.' });
    expect((await at('/tx/messages', { method: 'POST', body: 'x'.repeat(4096) })).status).toBe(413);
    expect((await at('/tx/messages')).status).toBe(405);
    expect((await at('/elsewhere')).status).toBe(404);

    await p.check(); // the coordinator's /health/live: the recording receiver answers 202
    await coord.close();
    await expect(p.check()).rejects.toThrow(/coordinator not reachable/);
    await p.stop();
    await expect(at('/health')).rejects.toThrow();
  });

  it('names the address it cannot listen on', async () => {
    const busy = await receiver();
    const port = Number(new URL(busy.url).port);
    const p = make({ role: 'participant', coordinatorUrl: busy.url, listen: { host: '127.0.0.1', port } });
    await expect(p.start(async () => undefined)).rejects.toThrow(`cannot listen on 127.0.0.1:${port}: EADDRINUSE`);
    await busy.close();
  });
});
