import { ResendBudget } from './resend-budget';

describe('ResendBudget', () => {
  it('allows the minimum per second when nothing is answered, and refills with time', () => {
    let t = 0;
    const b = new ResendBudget(() => t, 10);
    let allowed = 0;
    for (let i = 0; i < 100; i++) if (b.take()) allowed++;
    expect(allowed).toBe(10);
    t += 500;
    allowed = 0;
    for (let i = 0; i < 100; i++) if (b.take()) allowed++;
    expect(allowed).toBe(5);
  });

  it('grows with the messages received in the last second', () => {
    let t = 0;
    const b = new ResendBudget(() => t, 10);
    for (let i = 0; i < 200; i++) b.onReceived();
    t += 1000;
    let allowed = 0;
    for (let i = 0; i < 1000; i++) if (b.take()) allowed++;
    // The rate is now 200 a second: the bucket refilled at that rate over the second, capped at a second's worth.
    expect(allowed).toBe(200);
    t += 1000; // nothing received in that second: back to the minimum
    allowed = 0;
    for (let i = 0; i < 1000; i++) if (b.take()) allowed++;
    expect(allowed).toBe(10);
  });
});
