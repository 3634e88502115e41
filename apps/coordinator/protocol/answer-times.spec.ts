import { AnswerTimes } from './answer-times';

describe('AnswerTimes', () => {
  it('has no timeout before the first answer, then the answer time and its variation (RFC 6298)', () => {
    const t = new AnswerTimes();
    expect(t.timeoutMs()).toBe(0);
    t.observe(100);
    expect(t.timeoutMs()).toBe(100 + 4 * 50);
    t.observe(100);
    // variation 0.75 * 50 + 0.25 * 0; smoothed stays 100
    expect(t.timeoutMs()).toBeCloseTo(100 + 4 * 37.5);
  });

  it('follows answers that slow down under load and speed up after it, with steady answers near their time', () => {
    const t = new AnswerTimes();
    for (let i = 0; i < 200; i++) t.observe(20);
    expect(t.timeoutMs()).toBeGreaterThanOrEqual(20);
    expect(t.timeoutMs()).toBeLessThan(21);
    for (let i = 0; i < 200; i++) t.observe(5000);
    expect(t.timeoutMs()).toBeGreaterThanOrEqual(4990);
    expect(t.timeoutMs()).toBeLessThan(5100);
    for (let i = 0; i < 200; i++) t.observe(30);
    expect(t.timeoutMs()).toBeLessThan(40);
  });

  it('widens with jitter: answers between 10 and 90 ms give a timeout above the slowest', () => {
    const t = new AnswerTimes();
    for (let i = 0; i < 500; i++) t.observe(i % 2 ? 10 : 90);
    expect(t.timeoutMs()).toBeGreaterThan(90);
    expect(t.timeoutMs()).toBeLessThan(300);
  });

  it('doubles on each resend up to the cap, and the next sample ends the back-off', () => {
    const t = new AnswerTimes();
    t.backOff(150, 1000);
    expect(t.timeoutMs()).toBe(300);
    t.backOff(150, 1000);
    expect(t.timeoutMs()).toBe(600);
    t.backOff(150, 1000);
    expect(t.timeoutMs()).toBe(1000);
    t.observe(40);
    expect(t.timeoutMs()).toBe(40 + 4 * 20);
  });

  it('allows steady answers at least the margin beyond their time', () => {
    const t = new AnswerTimes(500);
    for (let i = 0; i < 50; i++) t.observe(20);
    expect(t.timeoutMs()).toBe(520);
    for (let i = 0; i < 50; i++) t.observe(i % 2 ? 100 : 900);
    expect(t.timeoutMs()).toBeGreaterThan(900);
  });

  it('ignores samples that are not a time', () => {
    const t = new AnswerTimes();
    t.observe(NaN);
    t.observe(-5);
    expect(t.timeoutMs()).toBe(0);
  });
});
