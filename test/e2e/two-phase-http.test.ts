/**
 * End to end over HTTP (CONTRACT section 3b, no KAFKA_BROKERS): the built coordinator and three
 * example participants as processes, a real Postgres for each. Messages are signed
 * (TX_MESSAGE_SECRET on every process) and the coordinator requires an API key, which the
 * participants present on their posts. Participants' URLs come from begin/enlist, and payments'
 * also from TX_PARTICIPANT_URLS. Everything is observed from outside: the REST API, the
 * participants' own databases, and the processes' logs.
 */
import { randomUUID } from 'node:crypto';
import { encodeMessage, ProtocolMessage, sign } from '../../libs/protocol';
import { api, startCoordinator, startParticipant, TestCoordinator, TestParticipant } from '../support/coordinator';
import { dropCreatedDatabases, freshDatabase, query } from '../support/postgres';
import { eventually, freePort } from '../support/processes';

const NAMES = ['inventory', 'payments', 'shipping'];
/** Databases are named per run, so that concurrent runs of this suite cannot drop each other's. */
const RUN = `txe2eh_${randomUUID().slice(0, 8)}`;
const SECRET = 'e2e-http-message-secret-0123';
const API_KEY = 'e2e-http-api-key-0123456789';
const AUTH = { authorization: `Bearer ${API_KEY}` };
let coordinator: TestCoordinator;
const dbs: Record<string, string> = {};
const ports: Record<string, number> = {};
const urls: Record<string, string> = {};
const participants: Record<string, TestParticipant> = {};

const participantEnv = { TX_MESSAGE_SECRET: SECRET, COORDINATOR_API_KEY: API_KEY };
const launch = (name: string, databaseUrl: string, port: number) =>
  startParticipant(name, { transport: 'http', databaseUrl, port, coordinatorUrl: coordinator.url, env: participantEnv });

beforeAll(async () => {
  for (const name of NAMES) {
    ports[name] = await freePort();
    urls[name] = `http://127.0.0.1:${ports[name]}`;
  }
  coordinator = await startCoordinator({
    transport: 'http',
    database: `${RUN}_coordinator`,
    env: { TX_MESSAGE_SECRET: SECRET, COORDINATOR_API_KEYS: API_KEY, TX_PARTICIPANT_URLS: `payments=${urls.payments}` },
  });
  for (const name of NAMES) {
    dbs[name] = await freshDatabase(`${RUN}_${name}`);
    participants[name] = await launch(name, dbs[name], ports[name]);
    expect(participants[name].url).toBe(urls[name]);
  }
}, 120_000);

afterAll(async () => {
  await Promise.all(Object.values(participants).map((p) => p.stop()));
  await coordinator?.stop();
  await dropCreatedDatabases();
});

const call = (method: string, path: string, body?: unknown, headers?: Record<string, string>) =>
  api(coordinator.url, method, path, body, { ...AUTH, ...headers });
const getTx = async (id: string) => (await call('GET', `/v1/transactions/${id}`)).body;
const finished = (id: string) => eventually(() => getTx(id), (t) => t.state === 'committed' || t.state === 'aborted', 20_000, `transaction ${id} to finish`);

/** Posts one protocol message's bytes as a sender would: signed unless told otherwise. */
async function post(url: string, value: Buffer | string, o: { signature?: string | null; headers?: Record<string, string> } = {}) {
  const bytes = Buffer.from(value);
  const headers: Record<string, string> = { 'content-type': 'application/json', ...o.headers };
  const signature = o.signature === undefined ? sign(bytes, SECRET) : o.signature;
  if (signature !== null) headers['tx-signature'] = signature;
  const r = await fetch(url, { method: 'POST', headers, body: bytes });
  const text = await r.text();
  return { status: r.status, type: r.headers.get('content-type'), body: text ? JSON.parse(text) : null };
}
const toCoordinator = (m: ProtocolMessage | Buffer | string, o: { signature?: string | null } = {}) =>
  post(`${coordinator.url}/v1/messages`, Buffer.isBuffer(m) || typeof m === 'string' ? m : encodeMessage(m), { ...o, headers: AUTH });
const toParticipant = (name: string, m: ProtocolMessage | string) =>
  post(`${urls[name]}/tx/messages`, typeof m === 'string' ? m : encodeMessage(m));

async function stock(name: string, sku: string): Promise<number | null> {
  const rows = await query<{ qty: number }>(dbs[name], 'SELECT qty FROM example_stock WHERE participant = $1 AND sku = $2', [name, sku]);
  return rows.length ? Number(rows[0].qty) : null;
}

async function reservations(name: string, txId: string): Promise<number> {
  const rows = await query(dbs[name], 'SELECT 1 FROM example_reservation WHERE tx_id = $1', [txId]);
  return rows.length;
}

const order = (sku: string, qty = 1) => NAMES.map((name) => ({ name, url: urls[name], payload: { sku, qty } }));

/** A URL where nothing listens. */
const closedUrl = async () => `http://127.0.0.1:${await freePort()}`;

describe('two-phase commit over HTTP, end to end', () => {
  it('commits across three participants and every one applies it', async () => {
    const sku = `sku-${randomUUID()}`;
    const begun = await call('POST', '/v1/transactions', { participants: order(sku, 2), metadata: { order: 42 } });
    expect(begun.status).toBe(201);
    expect(begun.headers.get('location')).toBe(`/v1/transactions/${begun.body.id}`);
    expect(begun.body).toMatchObject({ protocol: '2pc', state: 'active', outcome: null, timeoutMs: 30000, metadata: { order: 42 } });
    expect(begun.body.participants.map((p: any) => p.url)).toEqual(NAMES.map((n) => urls[n]));

    const committed = await call('POST', `/v1/transactions/${begun.body.id}/commit`);
    expect(committed.status).toBe(200);
    expect(committed.body.outcome).toBe('commit');
    expect(committed.body.decidedAt).not.toBeNull();

    const done = await finished(begun.body.id);
    expect(done).toMatchObject({ state: 'committed', outcome: 'commit', reason: null });
    expect(done.participants.map((p: any) => [p.name, p.vote, p.acked])).toEqual(NAMES.map((n) => [n, 'yes', true]));
    for (const name of NAMES) {
      expect(await stock(name, sku)).toBe(98);
      expect(await reservations(name, begun.body.id)).toBe(0);
    }
    expect((await call('POST', `/v1/transactions/${begun.body.id}/commit`)).body.outcome).toBe('commit');
  });

  it('runs three-phase commit: prepare, pre-commit, then commit at every participant', async () => {
    const sku = `sku-${randomUUID()}`;
    const { body: tx } = await call('POST', '/v1/transactions', { protocol: '3pc', participants: order(sku, 4) });
    const r = await call('POST', `/v1/transactions/${tx.id}/commit`);
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ protocol: '3pc', outcome: 'commit' });
    const done = await finished(tx.id);
    expect(done.state).toBe('committed');
    expect(done.participants.map((p: any) => [p.name, p.vote, p.preCommitted, p.acked])).toEqual(NAMES.map((n) => [n, 'yes', true, true]));
    for (const name of NAMES) expect(await stock(name, sku)).toBe(96);
    // The coordinator's log shows the order of what it sent; resends repeat a step, never go back.
    const sent = coordinator.proc.output().split('\n').filter((l) => l.includes(tx.id) && l.includes('messages sent')).map((l) => JSON.parse(l).sent.map((m: string) => m.split(':')[0])[0]);
    expect(sent.filter((type: string, i: number) => type !== sent[i - 1])).toEqual(['prepare', 'pre-commit', 'commit']);
  });

  it('reaches a participant enlisted without a url through TX_PARTICIPANT_URLS', async () => {
    const sku = `sku-${randomUUID()}`;
    const parts = [{ name: 'inventory', url: urls.inventory, payload: { sku, qty: 4 } }, { name: 'payments', payload: { sku, qty: 4 } }];
    const { body: tx } = await call('POST', '/v1/transactions', { participants: parts });
    expect(tx.participants.find((p: any) => p.name === 'payments').url).toBeNull();
    expect((await call('POST', `/v1/transactions/${tx.id}/commit`)).body.outcome).toBe('commit');
    expect((await finished(tx.id)).state).toBe('committed');
    expect(await stock('payments', sku)).toBe(96);
  });

  it('aborts everywhere when one participant votes no', async () => {
    const sku = `sku-${randomUUID()}`;
    const parts = order(sku, 3);
    parts[1].payload.qty = 1000; // payments cannot reserve that much: votes no
    const { body: tx } = await call('POST', '/v1/transactions', { participants: parts });
    const r = await call('POST', `/v1/transactions/${tx.id}/commit`);
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ outcome: 'abort', reason: 'vote-no:payments' });
    const done = await finished(tx.id);
    expect(done.state).toBe('aborted');
    expect(done.participants.find((p: any) => p.name === 'payments')).toMatchObject({ vote: 'no', voteReason: 'insufficient-stock' });
    for (const name of NAMES) {
      const q = await stock(name, sku);
      expect(q === null || q === 100).toBe(true);
      expect(await reservations(name, tx.id)).toBe(0);
    }
  });

  it('aborts at the deadline when a participant stays silent, and the breaker for it opens', async () => {
    const sku = `sku-${randomUUID()}`;
    const silent = await closedUrl();
    const { body: tx } = await call('POST', '/v1/transactions', {
      timeoutMs: 1500,
      participants: [...order(sku), { name: 'nobody-listens', url: silent, payload: {} }],
    });
    const r = await call('POST', `/v1/transactions/${tx.id}/commit`);
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ outcome: 'abort', reason: 'timeout:prepare' });
    await eventually(() => getTx(tx.id), (t) => NAMES.every((n) => t.participants.find((p: any) => p.name === n).acked), 20_000, 'acks of the abort');
    for (const name of NAMES) {
      // Untouched (the abort overtook the prepare) or given back: never reduced.
      expect([null, 100]).toContain(await stock(name, sku));
      expect(await reservations(name, tx.id)).toBe(0);
    }
    expect((await getTx(tx.id)).state).toBe('aborting');
    // Repeated refused posts open the silent participant's breaker; sends then fail fast.
    const opened = await eventually(
      async () => coordinator.proc.output().split('\n').find((l) => l.includes('circuit breaker opened') && l.includes(silent)),
      (l) => l !== undefined, 10_000, 'the breaker to open',
    );
    expect(JSON.parse(opened!)).toMatchObject({ url: `${silent}/tx/messages` });
    await eventually(async () => coordinator.proc.output(), (o) => /circuit breaker open after repeated failures; failing fast/.test(o), 10_000, 'a fast failure');
  });

  it('answers 202 with the current state when waitMs passes before the outcome', async () => {
    const { body: tx } = await call('POST', '/v1/transactions', { timeoutMs: 5000, participants: [{ name: 'nobody-listens', url: await closedUrl() }] });
    const r = await call('POST', `/v1/transactions/${tx.id}/commit?waitMs=200`);
    expect(r.status).toBe(202);
    expect(r.body).toMatchObject({ state: 'preparing', outcome: null });
    await call('POST', `/v1/transactions/${tx.id}/abort`);
  });

  it('is unmoved by duplicated deliveries of every message', async () => {
    const sku = `sku-${randomUUID()}`;
    const { body: tx } = await call('POST', '/v1/transactions', { participants: order(sku, 5) });
    await call('POST', `/v1/transactions/${tx.id}/commit`);
    await finished(tx.id);
    const base = { v: 1 as const, txId: tx.id, protocol: '2pc' as const, sentAt: new Date().toISOString() };
    const twice = async (send: () => Promise<{ status: number }>) => {
      expect((await send()).status).toBe(202);
      expect((await send()).status).toBe(202);
    };
    for (const name of NAMES) {
      const prepare: ProtocolMessage = { ...base, type: 'prepare', participant: name, deadline: new Date(Date.now() + 60000).toISOString(), payload: { sku, qty: 5 } };
      await twice(() => toParticipant(name, prepare));
      await twice(() => toParticipant(name, { ...base, type: 'commit', participant: name }));
      await twice(() => toCoordinator({ ...base, type: 'vote', participant: name, vote: 'no' }));
      await twice(() => toCoordinator({ ...base, type: 'ack', participant: name, of: 'commit' }));
    }
    // Each participant answered every duplicate from its record; then nothing has moved.
    for (const name of NAMES) {
      await eventually(async () => participants[name].output().split('\n').filter((l) => l.includes(tx.id) && l.includes('duplicate prepare')).length, (n) => n >= 2, 10_000, `${name} to answer both duplicates`);
    }
    const marker = await call('POST', '/v1/transactions', { participants: order(`sku-${randomUUID()}`) });
    await call('POST', `/v1/transactions/${marker.body.id}/commit`);
    await finished(marker.body.id);
    expect(await getTx(tx.id)).toMatchObject({ state: 'committed', outcome: 'commit' });
    for (const name of NAMES) expect(await stock(name, sku)).toBe(95);
  });

  it('enlists participants over REST with their URLs, idempotently, then commits', async () => {
    const sku = `sku-${randomUUID()}`;
    const { body: tx } = await call('POST', '/v1/transactions', {});
    expect(tx.participants).toEqual([]);
    for (const p of order(sku)) expect((await call('POST', `/v1/transactions/${tx.id}/participants`, p)).status).toBe(201);
    const again = await call('POST', `/v1/transactions/${tx.id}/participants`, order(sku)[0]);
    expect(again.status).toBe(200);
    expect(again.body.participants).toHaveLength(3);
    expect((await call('POST', `/v1/transactions/${tx.id}/commit`)).body.outcome).toBe('commit');
    expect((await finished(tx.id)).state).toBe('committed');
    const late = await call('POST', `/v1/transactions/${tx.id}/participants`, { name: 'latecomer', url: urls.inventory });
    expect(late.status).toBe(409);
    expect(late.headers.get('content-type')).toMatch(/application\/problem\+json/);
  });

  it('commits at once with no participants, and lists newest first with filters and a cursor', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      const { body } = await call('POST', '/v1/transactions', { metadata: { i } });
      ids.push(body.id);
      expect((await call('POST', `/v1/transactions/${body.id}/commit`)).body).toMatchObject({ state: 'committed', outcome: 'commit' });
    }
    const page1 = await call('GET', '/v1/transactions?state=committed&limit=2');
    expect(page1.status).toBe(200);
    expect(page1.body.items.map((t: any) => t.id)).toEqual([ids[2], ids[1]]);
    const page2 = await call('GET', `/v1/transactions?state=committed&limit=2&cursor=${page1.body.nextCursor}`);
    expect(page2.body.items[0].id).toBe(ids[0]);
    const byParticipant = await call('GET', '/v1/transactions?participant=payments&limit=200');
    expect(byParticipant.body.items.length).toBeGreaterThan(0);
    expect(byParticipant.body.items.every((t: any) => t.participants.some((p: any) => p.name === 'payments'))).toBe(true);
  });

  it('begins idempotently with Idempotency-Key', async () => {
    const key = `key-${randomUUID()}`;
    const body = { participants: [{ name: 'inventory', url: urls.inventory, payload: { sku: 'x', qty: 1 } }], metadata: { a: 1, b: 2 } };
    const first = await call('POST', '/v1/transactions', body, { 'idempotency-key': key });
    expect(first.status).toBe(201);
    const reordered = { metadata: { b: 2, a: 1 }, participants: body.participants };
    const second = await call('POST', '/v1/transactions', reordered, { 'idempotency-key': key });
    expect(second.status).toBe(200);
    expect(second.body.id).toBe(first.body.id);
    const other = await call('POST', '/v1/transactions', { metadata: { a: 2 } }, { 'idempotency-key': key });
    expect(other.status).toBe(422);
    expect(other.body).toMatchObject({ status: 422, type: expect.any(String), title: expect.any(String), detail: expect.any(String) });
    await call('POST', `/v1/transactions/${first.body.id}/abort`);
  });

  it('refuses bad requests of every kind with problem JSON and changes nothing', async () => {
    const { body: tx } = await call('POST', '/v1/transactions', { participants: [{ name: 'inventory', url: urls.inventory, payload: { sku: 'z', qty: 1 } }] });
    const before = await getTx(tx.id);
    const countBefore = (await call('GET', '/v1/transactions?limit=200')).body.items.length;
    const cases: [string, string, unknown, Record<string, string> | undefined, number, string?][] = [
      ['POST', '/v1/transactions', '{"protocol":', undefined, 400],
      ['POST', '/v1/transactions', 'protocol=2pc', { 'content-type': 'text/plain' }, 415],
      ['POST', '/v1/transactions', { protocol: '4pc' }, undefined, 400, 'body.protocol'],
      ['POST', '/v1/transactions', { timeoutMs: 5 }, undefined, 400, 'body.timeoutMs'],
      ['POST', '/v1/transactions', { timeoutMs: 'soon' }, undefined, 400, 'body.timeoutMs'],
      ['POST', '/v1/transactions', { participants: [{ name: 'bad name!' }] }, undefined, 400, 'body.participants.0.name'],
      ['POST', '/v1/transactions', { participants: [{ name: 'a', url: 'ftp://x' }] }, undefined, 400, 'body.participants.0.url'],
      ['POST', '/v1/transactions', { participants: [{ name: 'a' }, { name: 'a' }] }, undefined, 400, 'body.participants'],
      ['POST', '/v1/transactions', { surprise: true }, undefined, 400, 'body'],
      ['POST', '/v1/transactions', { metadata: { blob: 'x'.repeat(300 * 1024) } }, undefined, 413],
      ['POST', '/v1/transactions', { participants: [] }, { 'idempotency-key': 'has space' }, 400, 'header Idempotency-Key'],
      ['POST', '/v1/transactions', {}, { authorization: 'Bearer wrong-key-0123456789' }, 401],
      ['GET', '/v1/transactions/not-a-uuid', undefined, undefined, 400, 'path.id'],
      ['GET', `/v1/transactions/${randomUUID()}`, undefined, undefined, 404],
      ['POST', `/v1/transactions/${randomUUID()}/commit`, undefined, undefined, 404],
      ['POST', `/v1/transactions/${tx.id}/commit?waitMs=-1`, undefined, undefined, 400, 'query.waitMs'],
      ['POST', `/v1/transactions/${tx.id}/participants`, { name: 'inventory', payload: { sku: 'other' } }, undefined, 409],
      ['POST', `/v1/transactions/${tx.id}/participants`, { payload: {} }, undefined, 400, 'body.name'],
      ['GET', '/v1/transactions?limit=0', undefined, undefined, 400, 'query.limit'],
      ['GET', '/v1/transactions?state=exploded', undefined, undefined, 400, 'query.state'],
      ['GET', '/v1/transactions?cursor=garbage', undefined, undefined, 400, 'query.cursor'],
      ['GET', '/v1/nothing-here', undefined, undefined, 404],
      ['POST', '/v1/messages', 'not a message', { 'content-type': 'text/plain' }, 400],
      ['POST', '/v1/messages', { v: 9, type: 'vote' }, undefined, 400],
      ['POST', '/v1/messages', 'x'.repeat(300 * 1024), undefined, 413],
      ['POST', '/v1/messages', { v: 1 }, { authorization: '' }, 401],
    ];
    for (const [method, path, body, headers, status, field] of cases) {
      const r = await call(method, path, body, headers);
      const label = `${method} ${path} ${typeof body === 'string' ? body.slice(0, 60) : JSON.stringify(body ?? '').slice(0, 60)}`;
      expect([label, r.status]).toEqual([label, status]);
      expect([label, r.headers.get('content-type')]).toEqual([label, expect.stringMatching(/^application\/problem\+json/)]);
      expect(r.body).toMatchObject({ type: expect.any(String), title: expect.any(String), status, detail: expect.any(String) });
      if (field) expect([label, r.body.errors.map((e: any) => e.field)]).toEqual([label, expect.arrayContaining([field])]);
    }
    expect(await getTx(tx.id)).toEqual(before);
    expect((await call('GET', '/v1/transactions?limit=200')).body.items.length).toBe(countBefore);
    await call('POST', `/v1/transactions/${tx.id}/commit`);
    const conflict = await call('POST', `/v1/transactions/${tx.id}/abort`);
    expect(conflict.status).toBe(409);
  });

  it('refuses unreadable and badly signed messages with 400 problem JSON and carries on', async () => {
    const m: ProtocolMessage = { v: 1, type: 'vote', txId: randomUUID(), participant: 'inventory', protocol: '2pc', sentAt: new Date().toISOString(), vote: 'yes' };
    const cases: [string, Promise<{ status: number; type: string | null; body: any }>, RegExp][] = [
      ['garbage', toCoordinator('this is not json'), /not JSON/],
      ['an unknown version', toCoordinator(JSON.stringify({ v: 9, type: 'vote' })), /unknown protocol version v=9/],
      ['an invalid message', toCoordinator(JSON.stringify({ ...m, vote: 'maybe' })), /invalid message: vote/],
      ['a bad signature', toCoordinator(m, { signature: sign(encodeMessage(m), 'not-the-secret-0123456789') }), /bad signature/],
      ['no signature', toCoordinator(m, { signature: null }), /missing signature/],
      ['garbage to a participant', toParticipant('shipping', 'this is not json'), /not JSON/],
      ['a bad signature to a participant', post(`${urls.shipping}/tx/messages`, encodeMessage({ ...m, type: 'commit' } as ProtocolMessage), { signature: '0'.repeat(64) }), /bad signature/],
    ];
    for (const [what, answer, reason] of cases) {
      const r = await answer;
      expect([what, r.status, r.type]).toEqual([what, 400, expect.stringMatching(/^application\/problem\+json/)]);
      expect([what, r.body]).toEqual([what, expect.objectContaining({ type: 'urn:txcoord:problem:unreadable-message', status: 400, detail: expect.stringMatching(reason) })]);
    }
    expect(coordinator.proc.output()).toMatch(/unreadable message refused/);
    const sku = `sku-${randomUUID()}`;
    const { body: tx } = await call('POST', '/v1/transactions', { participants: order(sku) });
    expect((await call('POST', `/v1/transactions/${tx.id}/commit`)).body.outcome).toBe('commit');
  });

  it('a participant restarted while prepared asks for the outcome and finishes', async () => {
    const sku = `sku-${randomUUID()}`;
    const lateDb = await freshDatabase(`${RUN}_late`);
    const latePort = await freePort();
    const { body: tx } = await call('POST', '/v1/transactions', {
      timeoutMs: 60_000,
      participants: [
        { name: 'inventory', url: urls.inventory, payload: { sku, qty: 7 } },
        { name: 'late', url: `http://127.0.0.1:${latePort}`, payload: { sku, qty: 1 } },
      ],
    });
    expect((await call('POST', `/v1/transactions/${tx.id}/commit?waitMs=100`)).status).toBe(202);
    await eventually(() => getTx(tx.id), (t) => t.participants[0].vote === 'yes', 20_000, 'inventory to vote yes');
    expect(await reservations('inventory', tx.id)).toBe(1);
    await participants.inventory.kill(); // crash while prepared, before any decision
    const late = await launch('late', lateDb, latePort);
    await eventually(() => getTx(tx.id), (t) => t.outcome === 'commit', 45_000, 'the commit decision (after the breaker for the late URL half-opens)');
    participants.inventory = await launch('inventory', dbs.inventory, ports.inventory);
    const done = await finished(tx.id);
    expect(done.state).toBe('committed');
    expect(await reservations('inventory', tx.id)).toBe(0);
    expect(await stock('inventory', sku)).toBe(93);
    expect(participants.inventory.output()).toMatch(new RegExp(`${tx.id}.*in doubt after restart; sending status-request`));
    await eventually(async () => coordinator.proc.output(), (o) => o.split('\n').some((l) => l.includes('status request') && l.includes(tx.id)), 10_000, 'a status request');
    await late.stop();
  });
});
