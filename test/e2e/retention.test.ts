/**
 * Retention: a finished transaction is deleted from the log TX_RETENTION_MS after it finished
 * (then it is 404, and gone from the list); an unfinished one stays however old it is.
 */
import { randomUUID } from 'node:crypto';
import { api, startCoordinator, TestCoordinator } from '../support/coordinator';
import { dropCreatedDatabases, query } from '../support/postgres';
import { eventually, freePort } from '../support/processes';

let coordinator: TestCoordinator;

beforeAll(async () => {
  coordinator = await startCoordinator({ transport: 'http', database: `txretention_${randomUUID().slice(0, 8)}`, env: { TX_RETENTION_MS: '2000' } });
}, 60_000);

afterAll(async () => {
  await coordinator?.stop();
  await dropCreatedDatabases();
});

describe('retention of finished transactions', () => {
  it('deletes finished transactions after TX_RETENTION_MS and keeps unfinished ones', async () => {
    const call = (method: string, path: string, body?: unknown, headers?: Record<string, string>) => api(coordinator.url, method, path, body, headers);
    // No participants: committed and finished at once.
    const key = `retention-${randomUUID()}`;
    const finished = (await call('POST', '/v1/transactions', {}, { 'idempotency-key': key })).body;
    expect((await call('POST', `/v1/transactions/${finished.id}/commit`)).body).toMatchObject({ state: 'committed' });
    // A participant that never answers: preparing, unfinished, for a minute.
    const nowhere = `http://127.0.0.1:${await freePort()}`;
    const unfinished = (await call('POST', '/v1/transactions', { timeoutMs: 60_000, participants: [{ name: 'ghost', url: nowhere }] })).body;
    await call('POST', `/v1/transactions/${unfinished.id}/commit?waitMs=0`);

    await eventually(() => call('GET', `/v1/transactions/${finished.id}`), (r) => r.status === 404, 15_000, 'the finished transaction to be deleted');
    const rows = await query<{ n: number }>(coordinator.env.DATABASE_URL, 'SELECT count(*)::int AS n FROM tx_participant p JOIN tx_transaction t ON t.id = p.tx_id WHERE t.id = $1', [finished.id]);
    expect(rows[0].n).toBe(0);
    const list = (await call('GET', '/v1/transactions?limit=100')).body;
    expect(list.items.map((t: { id: string }) => t.id)).not.toContain(finished.id);
    expect(list.items.map((t: { id: string }) => t.id)).toContain(unfinished.id);
    expect((await call('GET', `/v1/transactions/${unfinished.id}`)).body).toMatchObject({ state: 'preparing' });
    await coordinator.proc.waitFor(/finished transactions past retention deleted/, 5000);
    // Its Idempotency-Key is forgotten with it: the same key begins a new transaction.
    const again = await call('POST', '/v1/transactions', {}, { 'idempotency-key': key });
    expect(again.status).toBe(201);
    expect(again.body.id).not.toBe(finished.id);
    await call('POST', `/v1/transactions/${unfinished.id}/abort`);
  }, 60_000);
});
