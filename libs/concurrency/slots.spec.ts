import { Slots } from './slots';

describe('Slots', () => {
  it('grants up to its size at once and hands a released slot to the first waiter', async () => {
    const s = new Slots(2);
    expect(await s.acquire(1000)).toBe(true);
    expect(await s.acquire(1000)).toBe(true);
    const order: string[] = [];
    const third = s.acquire(1000).then((ok) => order.push(`third ${ok}`));
    const fourth = s.acquire(1000).then((ok) => order.push(`fourth ${ok}`));
    expect(s.usage).toEqual({ held: 2, waiting: 2 });
    s.release();
    await third;
    expect(order).toEqual(['third true']);
    expect(s.usage).toEqual({ held: 2, waiting: 1 });
    s.release();
    await fourth;
    expect(order).toEqual(['third true', 'fourth true']);
    s.release();
    s.release();
    expect(s.usage).toEqual({ held: 0, waiting: 0 });
  });

  it('answers false to a waiter whose time ran out, and leaves the queue to the others', async () => {
    const s = new Slots(1);
    expect(await s.acquire(0)).toBe(true);
    const impatient = s.acquire(10);
    const patient = s.acquire(5000);
    expect(await impatient).toBe(false);
    expect(s.usage).toEqual({ held: 1, waiting: 1 });
    s.release();
    expect(await patient).toBe(true);
    s.release();
    expect(s.usage).toEqual({ held: 0, waiting: 0 });
  });

  it('refuses a size below one', () => {
    expect(() => new Slots(0)).toThrow(/at least 1/);
  });
});
