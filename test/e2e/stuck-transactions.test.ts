/**
 * Nothing retries forever unseen: a transaction unfinished for longer than TX_STUCK_AFTER_MS is
 * logged at warn (txId, state, who has not answered) once per check, and its REST view says
 * `stuck: true` with `waitingFor`. The coordinator runs over HTTP here, with a participant whose
 * URL answers nothing, so prepares are resent and never answered.
 */
import { randomUUID } from 'node:crypto';
import { api, startCoordinator, TestCoordinator } from '../support/coordinator';
import { dropCreatedDatabases } from '../support/postgres';
import { eventually, freePort } from '../support/processes';

let coordinator: TestCoordinator;

beforeAll(async () => {
  coordinator = await startCoordinator({
    transport: 'http',
    database: `txstuck_${randomUUID().slice(0, 8)}`,
    env: { TX_STUCK_AFTER_MS: '1500' },
  });
}, 60_000);

afterAll(async () => {
  await coordinator?.stop();
  await dropCreatedDatabases();
});

describe('stuck transactions', () => {
  it('are reported in the log and in their state details; others are not', async () => {
    const nowhere = `http://127.0.0.1:${await freePort()}`;
    const call = (method: string, path: string, body?: unknown) => api(coordinator.url, method, path, body);
    const { body: tx } = await call('POST', '/v1/transactions', { timeoutMs: 60_000, participants: [{ name: 'ghost', url: nowhere }] });
    expect(tx).toMatchObject({ stuck: false, waitingFor: [] }); // active: the client's turn
    const waiting = await call('POST', `/v1/transactions/${tx.id}/commit?waitMs=0`);
    expect(waiting.body).toMatchObject({ state: 'preparing', stuck: false, waitingFor: ['ghost'] });
    const idle = (await call('POST', '/v1/transactions', { timeoutMs: 60_000 })).body; // active, deadline ahead: never stuck

    const line = await coordinator.proc.waitFor(new RegExp(`"txId":"${tx.id}".*transaction stuck`), 15_000);
    expect(JSON.parse(line)).toMatchObject({ level: 40, txId: tx.id, state: 'preparing', waitingFor: ['ghost'] });
    const seen = await eventually(() => call('GET', `/v1/transactions/${tx.id}`), (r) => r.body.stuck === true, 5000, 'stuck in the REST view');
    expect(seen.body).toMatchObject({ state: 'preparing', stuck: true, waitingFor: ['ghost'] });
    expect((await call('GET', `/v1/transactions/${idle.id}`)).body).toMatchObject({ state: 'active', stuck: false });
    expect(coordinator.proc.output()).not.toMatch(new RegExp(`"txId":"${idle.id}".*transaction stuck`));
    // Reported again at the next check, not on every resend.
    const stuckLines = async () => coordinator.proc.output().split('\n').filter((l) => l.includes(tx.id) && l.includes('transaction stuck'));
    const reports = await eventually(stuckLines, (lines) => lines.length >= 2, 15_000, 'a second report');
    const resends = coordinator.proc.output().split('\n').filter((l) => l.includes(tx.id) && l.includes('send failed'));
    expect(reports.length).toBeLessThan(resends.length + 2);
    await call('POST', `/v1/transactions/${tx.id}/abort`);
  }, 60_000);
});
