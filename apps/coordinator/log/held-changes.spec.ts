import { begin } from '../../../libs/engine';
import { HeldChange, HeldChanges } from './held-changes';

const tx = (id: string) => begin({ id, protocol: '2pc', timeoutMs: 1000, participants: [{ name: 'a' }], now: 0 }).state;
const held = (id: string, checkedAt: number): HeldChange => ({ state: tx(id), saved: tx(id), version: 1, checkedAt });

describe('HeldChanges', () => {
  it('trusts a change only for a while after it was checked against the log', () => {
    const h = new HeldChanges(10, 1000);
    h.set('x', held('x', 5000));
    expect(h.trusted(h.get('x')!, 5999)).toBe(true);
    expect(h.trusted(h.get('x')!, 6000)).toBe(false);
  });

  it('keeps at most its bound, dropping the least recently set', () => {
    const h = new HeldChanges(2, 1000);
    h.set('x', held('x', 0));
    h.set('y', held('y', 0));
    h.set('x', held('x', 1)); // x is now the most recent
    h.set('z', held('z', 0));
    expect([h.get('x'), h.get('y'), h.get('z')].map(Boolean)).toEqual([true, false, true]);
    expect(h.size).toBe(2);
    h.delete('x');
    expect(h.size).toBe(1);
  });
});
