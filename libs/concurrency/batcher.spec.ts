import { Batcher } from './batcher';

/** A batch function that records each batch and answers when released. */
function recorder() {
  const batches: number[][] = [];
  const releases: (() => void)[] = [];
  const runBatch = (items: number[]) => {
    batches.push(items);
    return new Promise<number[]>((resolve) => releases.push(() => resolve(items.map((i) => i * 10))));
  };
  const releaseNext = async () => {
    releases.shift()!();
    await new Promise((r) => setImmediate(r));
  };
  return { batches, runBatch, releaseNext, pending: () => releases.length };
}

describe('Batcher', () => {
  it('sends an item at once when idle, and groups the items that arrive while a batch is under way', async () => {
    const r = recorder();
    const b = new Batcher(r.runBatch, { maxInFlight: 1, maxItems: 100 });
    const first = b.run(1);
    expect(r.batches).toEqual([[1]]);
    const rest = [b.run(2), b.run(3), b.run(4)];
    expect(b.queued).toBe(3);
    await r.releaseNext();
    expect(await first).toBe(10);
    expect(r.batches).toEqual([[1], [2, 3, 4]]);
    await r.releaseNext();
    expect(await Promise.all(rest)).toEqual([20, 30, 40]);
  });

  it('keeps up to maxInFlight batches under way', async () => {
    const r = recorder();
    const b = new Batcher(r.runBatch, { maxInFlight: 2, maxItems: 100 });
    const all = [b.run(1), b.run(2), b.run(3), b.run(4)];
    expect(r.batches).toEqual([[1], [2]]);
    await r.releaseNext();
    expect(r.batches).toEqual([[1], [2], [3, 4]]);
    await r.releaseNext();
    await r.releaseNext();
    expect(await Promise.all(all)).toEqual([10, 20, 30, 40]);
  });

  it('splits by maxItems and by weight, a heavy item going alone', async () => {
    const r = recorder();
    const b = new Batcher(r.runBatch, { maxInFlight: 1, maxItems: 3, weigh: (i) => i, maxWeight: 10 });
    const all = [0, 1, 2, 3, 4, 5, 20, 1].map((i) => b.run(i));
    while (r.pending()) await r.releaseNext();
    await Promise.all(all);
    expect(r.batches).toEqual([[0], [1, 2, 3], [4, 5], [20], [1]]);
  });

  it('rejects every item of a failed batch and goes on with the next', async () => {
    let calls = 0;
    const b = new Batcher(async (items: string[]) => {
      calls++;
      await new Promise((r) => setImmediate(r));
      if (items.includes('bad')) throw new Error('boom');
      return items.map((s) => s.toUpperCase());
    }, { maxInFlight: 1, maxItems: 10 });
    const first = b.run('a');
    const bad = [b.run('bad'), b.run('b')];
    await expect(first).resolves.toBe('A');
    await expect(bad[0]).rejects.toThrow('boom');
    await expect(bad[1]).rejects.toThrow('boom');
    await expect(b.run('c')).resolves.toBe('C');
    expect(calls).toBe(3);
  });

  it('rejects when the batch function answers the wrong number of results', async () => {
    const b = new Batcher(async () => [1], { maxInFlight: 1, maxItems: 10 });
    const first = b.run(1);
    const two = [b.run(2), b.run(3)];
    await expect(first).resolves.toBe(1);
    await expect(two[0]).rejects.toThrow('1 results for 2 items');
    await expect(two[1]).rejects.toThrow('1 results for 2 items');
  });
});
