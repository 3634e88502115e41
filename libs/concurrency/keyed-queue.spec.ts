import { KeyedQueue } from './keyed-queue';

const tick = (ms = 5) => new Promise((r) => setTimeout(r, ms));

describe('KeyedQueue', () => {
  it('runs one key at a time, in order, and different keys in parallel', async () => {
    const q = new KeyedQueue();
    const log: string[] = [];
    const task = (name: string, ms: number) => async () => {
      log.push(`start ${name}`);
      await tick(ms);
      log.push(`end ${name}`);
      return name;
    };
    const results = await Promise.all([q.run('a', task('a1', 20)), q.run('a', task('a2', 1)), q.run('b', task('b1', 1))]);
    expect(results).toEqual(['a1', 'a2', 'b1']);
    expect(log.indexOf('end a1')).toBeLessThan(log.indexOf('start a2'));
    expect(log.indexOf('start b1')).toBeLessThan(log.indexOf('end a1'));
    expect(q.size).toBe(0);
  });

  it('goes on after a failed task and reports the failure to its caller only', async () => {
    const q = new KeyedQueue();
    const failed = q.run('a', async () => {
      throw new Error('boom');
    });
    const next = q.run('a', async () => 'ok');
    await expect(failed).rejects.toThrow('boom');
    await expect(next).resolves.toBe('ok');
  });

  it('drain waits for work queued meanwhile', async () => {
    const q = new KeyedQueue();
    let done = 0;
    void q.run('a', async () => {
      await tick(10);
      void q.run('b', async () => {
        await tick(10);
        done++;
      });
      done++;
    });
    await q.drain();
    expect(done).toBe(2);
    expect(q.size).toBe(0);
  });
});
