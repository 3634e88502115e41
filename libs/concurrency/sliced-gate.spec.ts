import { SlicedGate } from './sliced-gate';

describe('SlicedGate', () => {
  it('holds every waiter until it opens', async () => {
    const gate = new SlicedGate(10);
    let through = 0;
    for (let i = 0; i < 5; i++) void gate.wait().then(() => through++);
    await new Promise((r) => setImmediate(r));
    expect(through).toBe(0);
    gate.open();
    await new Promise((r) => setImmediate(r));
    expect(through).toBe(5);
  });

  it('lets one slice through per turn of the event loop, in order, with other work in between', async () => {
    const gate = new SlicedGate(3);
    const order: string[] = [];
    const all = Array.from({ length: 8 }, (_, i) => gate.wait().then(() => void order.push(`w${i}`)));
    gate.open(); // the first slice now, the next one queued for the next turn
    setImmediate(() => order.push('other work'));
    await Promise.all(all);
    expect(order).toEqual(['w0', 'w1', 'w2', 'w3', 'w4', 'w5', 'other work', 'w6', 'w7']);
  });

  it('lets a waiter that comes after it has opened through at once', async () => {
    const gate = new SlicedGate(1);
    gate.open();
    await expect(gate.wait()).resolves.toBeUndefined();
  });
});
