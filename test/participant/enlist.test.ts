/** enlist() against a small real HTTP server standing in for the coordinator's REST API. */
import { createServer, IncomingMessage, Server } from 'node:http';
import { AddressInfo } from 'node:net';
import { randomUUID } from 'node:crypto';
import { enlist, EnlistError } from '../../libs/participant';

interface Seen {
  method?: string;
  url?: string;
  headers: IncomingMessage['headers'];
  body: unknown;
}

describe('enlist', () => {
  let server: Server;
  let url: string;
  const seen: Seen[] = [];
  /** The next answer: status and body. */
  let answer: { status: number; body: unknown; type?: string } = { status: 201, body: {} };

  beforeAll(async () => {
    server = createServer((req, res) => {
      let data = '';
      req.setEncoding('utf8');
      req.on('data', (c) => (data += c));
      req.on('end', () => {
        seen.push({ method: req.method, url: req.url, headers: req.headers, body: data ? JSON.parse(data) : null });
        res.writeHead(answer.status, { 'content-type': answer.type ?? 'application/json' });
        res.end(typeof answer.body === 'string' ? answer.body : JSON.stringify(answer.body));
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    await new Promise((resolve) => server.close(resolve));
  });

  beforeEach(() => {
    seen.length = 0;
  });

  const tx = (id: string) => ({
    id,
    protocol: '2pc',
    state: 'active',
    outcome: null,
    participants: [{ name: 'inventory', vote: null, acked: false, payload: { sku: 'A1', qty: 2 } }],
  });

  it('POSTs { name, payload } with a bearer key and resolves with the transaction (201)', async () => {
    const txId = randomUUID();
    answer = { status: 201, body: tx(txId) };
    const result = await enlist({ coordinatorUrl: `${url}/`, txId, name: 'inventory', payload: { sku: 'A1', qty: 2 }, apiKey: 'k1' });
    expect(result).toEqual(tx(txId));
    expect(seen).toHaveLength(1);
    expect(seen[0]).toMatchObject({
      method: 'POST',
      url: `/v1/transactions/${txId}/participants`,
      body: { name: 'inventory', payload: { sku: 'A1', qty: 2 } },
    });
    expect(seen[0].headers.authorization).toBe('Bearer k1');
    expect(seen[0].headers['content-type']).toBe('application/json');
  });

  it('resolves on 200 (already enlisted) and sends no Authorization without a key', async () => {
    const txId = randomUUID();
    answer = { status: 200, body: tx(txId) };
    await expect(enlist({ coordinatorUrl: url, txId, name: 'inventory' })).resolves.toMatchObject({ id: txId });
    expect(seen[0].headers.authorization).toBeUndefined();
    expect(seen[0].body).toEqual({ name: 'inventory' });
  });

  it('takes the coordinator URL from COORDINATOR_URL', async () => {
    const saved = process.env.COORDINATOR_URL;
    process.env.COORDINATOR_URL = url;
    try {
      const txId = randomUUID();
      answer = { status: 201, body: tx(txId) };
      await expect(enlist({ txId, name: 'inventory' })).resolves.toMatchObject({ id: txId });
    } finally {
      if (saved === undefined) delete process.env.COORDINATOR_URL;
      else process.env.COORDINATOR_URL = saved;
    }
  });

  it('throws an EnlistError carrying the problem detail on 409', async () => {
    answer = {
      status: 409,
      type: 'application/problem+json',
      body: { type: 'about:blank', title: 'Conflict', status: 409, detail: 'transaction is preparing, not active' },
    };
    const err = await enlist({ coordinatorUrl: url, txId: randomUUID(), name: 'inventory' }).catch((e) => e);
    expect(err).toBeInstanceOf(EnlistError);
    expect(err.message).toMatch(/failed \(409\): transaction is preparing, not active/);
    expect(err.status).toBe(409);
    expect(err.problem).toMatchObject({ title: 'Conflict' });
  });

  it('throws on a 5xx without a problem body too', async () => {
    answer = { status: 503, type: 'text/plain', body: 'log store unreachable' };
    await expect(enlist({ coordinatorUrl: url, txId: randomUUID(), name: 'inventory' })).rejects.toThrow(
      /failed \(503\): log store unreachable/,
    );
  });

  it('says so when the coordinator cannot be reached', async () => {
    await expect(
      enlist({ coordinatorUrl: 'http://127.0.0.1:1', txId: randomUUID(), name: 'inventory' }),
    ).rejects.toThrow(/cannot reach the coordinator at http:\/\/127.0.0.1:1/);
  });

  it('checks its arguments', async () => {
    await expect(enlist({ coordinatorUrl: url, txId: 'nope', name: 'inventory' })).rejects.toThrow(/txId must be a UUID/);
    await expect(enlist({ coordinatorUrl: url, txId: randomUUID(), name: 'a b' })).rejects.toThrow(/invalid participant name/);
    expect(seen).toEqual([]);
  });
});
