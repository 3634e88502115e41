import { begin } from '../../../libs/engine';
import { CachedTx, TxCache } from './tx-cache';

const tx = (id: string) => begin({ id, protocol: '2pc', timeoutMs: 1000, participants: [{ name: 'a' }], now: 0 }).state;
const entry = (id: string, checkedAt: number): CachedTx => ({ state: tx(id), held: false, version: 1, checkedAt });

describe('TxCache', () => {
  it('trusts an entry only for a while after it was checked against the log', () => {
    const c = new TxCache(10, 1000);
    c.set('x', entry('x', 5000));
    expect(c.trusted(c.get('x')!, 5999)).toBe(true);
    expect(c.trusted(c.get('x')!, 6000)).toBe(false);
  });

  it('keeps at most its bound, dropping the least recently set', () => {
    const c = new TxCache(2, 1000);
    c.set('x', entry('x', 0));
    c.set('y', entry('y', 0));
    c.set('x', entry('x', 1)); // x is now the most recent
    c.set('z', entry('z', 0));
    expect([c.get('x'), c.get('y'), c.get('z')].map(Boolean)).toEqual([true, false, true]);
    expect(c.size).toBe(2);
    c.delete('x');
    expect(c.size).toBe(1);
  });

  it('does not keep a finished transaction, and drops what it had of it', () => {
    const c = new TxCache(10, 1000);
    c.set('x', entry('x', 0));
    const done = entry('x', 1);
    c.set('x', { ...done, state: { ...done.state, phase: 'committed', completedAt: 1 } });
    expect(c.get('x')).toBeUndefined();
  });
});
