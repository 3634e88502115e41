/** enlist()'s circuit breaker per coordinator URL, against a small real HTTP server. */
import { createServer, Server } from 'node:http';
import { AddressInfo } from 'node:net';
import { randomUUID } from 'node:crypto';
import { BreakerOpenError, enlist, EnlistError, enlistBreakers } from '../../libs/participant';

describe('enlist circuit breaker', () => {
  let server: Server;
  let url: string;
  let requests = 0;
  let status = 503;
  const saved = { ...process.env };

  beforeAll(async () => {
    server = createServer((req, res) => {
      requests++;
      req.resume();
      req.on('end', () => {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(status < 300 ? { id: 'x', protocol: '2pc', state: 'active', outcome: null, participants: [] } : { title: 'no', status, detail: 'nope' }));
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    Object.assign(process.env, { TX_BREAKER_VOLUME: '3', TX_BREAKER_ERROR_PERCENT: '50', TX_BREAKER_RESET_MS: '300' });
  });

  afterAll(async () => {
    process.env = saved;
    await new Promise((resolve) => server.close(resolve));
  });

  const call = () => enlist({ coordinatorUrl: url, txId: randomUUID(), name: 'inventory' });

  it('does not open on 4xx answers (the caller\'s mistakes)', async () => {
    status = 409;
    for (let i = 0; i < 5; i++) await expect(call()).rejects.toBeInstanceOf(EnlistError);
    expect(enlistBreakers()[url]).toMatchObject({ state: 'closed' });
  });

  it('opens after repeated 5xx, then fails fast without calling the coordinator; a probe after the reset closes it', async () => {
    status = 503;
    for (let i = 0; i < 6; i++) await call().catch(() => undefined);
    expect(enlistBreakers()[url].state).toBe('open');
    const before = requests;
    const err = await call().catch((e) => e);
    expect(err).toBeInstanceOf(BreakerOpenError);
    expect(err.message).toMatch(/circuit breaker coordinator-http .* is open/);
    expect(requests).toBe(before); // failed fast: nothing reached the coordinator
    await new Promise((r) => setTimeout(r, 400));
    expect(enlistBreakers()[url].state).toBe('half-open');
    status = 201;
    await expect(call()).resolves.toMatchObject({ state: 'active' });
    expect(enlistBreakers()[url].state).toBe('closed');
  });

  it('can be bypassed per call', async () => {
    status = 503;
    for (let i = 0; i < 6; i++) await call().catch(() => undefined);
    expect(enlistBreakers()[url].state).toBe('open');
    status = 201;
    await expect(enlist({ coordinatorUrl: url, txId: randomUUID(), name: 'inventory', breaker: false })).resolves.toMatchObject({ state: 'active' });
  });
});
