/** The demo's summary: nearest-rank percentiles and the grouping of its table. */
import { percentile, summarize, table } from '../../tools/demo/report';

test('percentiles are nearest-rank', () => {
  const v = Array.from({ length: 100 }, (_, i) => i + 1);
  expect([percentile(v, 50), percentile(v, 95), percentile(v, 100)]).toEqual([50, 95, 100]);
  expect(percentile([7], 50)).toBe(7);
  expect(percentile([], 50)).toBeNaN();
});

test('rows per outcome and kind of reason, commits first, then the total', () => {
  const results = [
    { outcome: 'commit' as const, reason: null, latencyMs: 100 },
    { outcome: 'commit' as const, reason: null, latencyMs: 300 },
    { outcome: 'abort' as const, reason: 'vote-no:store', latencyMs: 50 },
    { outcome: 'abort' as const, reason: 'vote-no:inventory', latencyMs: 70 },
    { outcome: 'abort' as const, reason: 'timeout:prepare', latencyMs: 1600 },
  ];
  expect(summarize(results)).toEqual([
    { outcome: 'commit', reason: '-', count: 2, p50: 100, p95: 300, max: 300 },
    { outcome: 'abort', reason: 'vote-no', count: 2, p50: 50, p95: 70, max: 70 },
    { outcome: 'abort', reason: 'timeout:prepare', count: 1, p50: 1600, p95: 1600, max: 1600 },
  ]);
  const lines = table(results);
  expect(lines[0]).toMatch(/^outcome\s+reason\s+count\s+p50\s+p95\s+max$/);
  expect(lines[lines.length - 1]).toMatch(/^total\s+5\s+100 ms\s+1\.60 s\s+1\.60 s$/);
});
