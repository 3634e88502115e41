/** The demo's numbers: what each transaction ended as, and the table printed at the end. */

/** One transaction as the demo's client saw it. */
export interface Result {
  /** `commit`, `abort`, or `error` when the client got no outcome (the reason says why). */
  outcome: 'commit' | 'abort' | 'error';
  /** The coordinator's reason for an abort (`vote-no:store`, `timeout:prepare`), or the client's error. */
  reason: string | null;
  /** From the begin request to the answer that carried the outcome. */
  latencyMs: number;
}

/** The nearest-rank percentile of sorted values (p in 0..100). */
export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1];
}

/** `vote-no:store` → `vote-no`: the table groups by kind of reason, not by participant. */
export function reasonKind(reason: string | null): string {
  if (!reason) return '-';
  return reason.startsWith('vote-no:') ? 'vote-no' : reason;
}

export interface Row {
  outcome: string;
  reason: string;
  count: number;
  p50: number;
  p95: number;
  max: number;
}

/** One row per outcome and kind of reason, commits first, then by count. */
export function summarize(results: Result[]): Row[] {
  const groups = new Map<string, { outcome: string; reason: string; latencies: number[] }>();
  for (const r of results) {
    const reason = r.outcome === 'error' ? (r.reason ?? 'error') : reasonKind(r.reason);
    const key = `${r.outcome}\u0000${reason}`;
    const g = groups.get(key) ?? { outcome: r.outcome, reason, latencies: [] };
    g.latencies.push(r.latencyMs);
    groups.set(key, g);
  }
  const order = { commit: 0, abort: 1, error: 2 } as Record<string, number>;
  return [...groups.values()]
    .map((g) => {
      const sorted = [...g.latencies].sort((a, b) => a - b);
      return { outcome: g.outcome, reason: g.reason, count: sorted.length, p50: percentile(sorted, 50), p95: percentile(sorted, 95), max: sorted[sorted.length - 1] };
    })
    .sort((a, b) => order[a.outcome] - order[b.outcome] || b.count - a.count || a.reason.localeCompare(b.reason));
}

export function formatMs(ms: number): string {
  if (!Number.isFinite(ms)) return '-';
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(2)} s`;
}

/** The final table, as lines. */
export function table(results: Result[]): string[] {
  const rows = summarize(results);
  const all = [...results.map((r) => r.latencyMs)].sort((a, b) => a - b);
  const body = rows.map((r) => [r.outcome, r.reason, String(r.count), formatMs(r.p50), formatMs(r.p95), formatMs(r.max)]);
  body.push(['total', '', String(results.length), formatMs(percentile(all, 50)), formatMs(percentile(all, 95)), formatMs(all[all.length - 1])]);
  const head = ['outcome', 'reason', 'count', 'p50', 'p95', 'max'];
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (i >= 2 ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join('  ').trimEnd();
  return [line(head), widths.map((w) => '-'.repeat(w)).join('  '), ...body.slice(0, -1).map(line), widths.map((w) => '-'.repeat(w)).join('  '), line(body[body.length - 1])];
}
