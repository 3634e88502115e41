/**
 * Summarizes a V8 CPU profile (.cpuprofile, from node --cpu-prof): self time by function and by
 * package, the top lines. Used for BENCHMARKS.md.
 *
 *   node dist/tools/bench/profile-summary.js .data/bench/profile/<file>.cpuprofile [--top 25] [--from s] [--to s]
 *
 * `--from` / `--to` keep only the samples taken that many seconds after the profile started (a
 * restarted coordinator's first seconds, say). Also lists our own functions by total time (with
 * what they call), which says which of our steps lead to the expensive library work.
 */
import { readFileSync } from 'node:fs';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

function where(url: string): string {
  const m = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (m) return m[1];
  if (url.includes('/dist/')) return `ours: ${url.slice(url.indexOf('/dist/') + 6).split('/').slice(0, 2).join('/')}`;
  if (url.startsWith('node:') || url === '') return url || '(native / idle / gc)';
  return url;
}

function main(): void {
  const [file, ...rest] = process.argv.slice(2);
  if (!file) throw new Error('usage: profile-summary.js <file.cpuprofile> [--top n] [--from s] [--to s]');
  const option = (name: string) => (rest.includes(name) ? Number(rest[rest.indexOf(name) + 1]) : undefined);
  const top = option('--top') || 25;
  const from = (option('--from') ?? 0) * 1e6;
  const to = (option('--to') ?? Infinity) * 1e6;
  const p = JSON.parse(readFileSync(file, 'utf8')) as Profile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const self = new Map<number, number>();
  const ours = new Map<string, number>();
  let total = 0;
  let at = 0;
  p.samples.forEach((id, i) => {
    const dt = p.timeDeltas[i] ?? 0;
    at += dt;
    if (at < from || at > to) return;
    self.set(id, (self.get(id) ?? 0) + dt);
    total += dt;
    // Total time of our functions: each counted once per sample, however deep the recursion.
    const seen = new Set<string>();
    for (let n: number | undefined = id; n !== undefined; n = parent.get(n)) {
      const f = byId.get(n)!.callFrame;
      if (!f.url.includes('/dist/')) continue;
      const name = `${f.functionName || '(anonymous)'} ${where(f.url)}:${f.lineNumber + 1}`;
      if (!seen.has(name)) ours.set(name, (ours.get(name) ?? 0) + dt);
      seen.add(name);
    }
  });
  const byFunction = new Map<string, number>();
  const byPackage = new Map<string, number>();
  for (const [id, t] of self) {
    const n = byId.get(id)!;
    const fn = `${n.callFrame.functionName || '(anonymous)'} ${where(n.callFrame.url)}${n.callFrame.url ? `:${n.callFrame.lineNumber + 1}` : ''}`;
    byFunction.set(fn, (byFunction.get(fn) ?? 0) + t);
    const pkg = ['(idle)', '(program)', '(garbage collector)'].includes(n.callFrame.functionName) ? n.callFrame.functionName : where(n.callFrame.url);
    byPackage.set(pkg, (byPackage.get(pkg) ?? 0) + t);
  }
  const pct = (t: number) => `${((100 * t) / total).toFixed(1).padStart(5)} %`;
  console.log(`profile: ${(total / 1e6).toFixed(1)} s sampled`);
  console.log('\nself time by package:');
  for (const [k, t] of [...byPackage].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`  ${pct(t)}  ${k}`);
  console.log('\nself time by function:');
  for (const [k, t] of [...byFunction].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`  ${pct(t)}  ${k}`);
  console.log('\nour functions by total time (self and what they call):');
  for (const [k, t] of [...ours].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`  ${pct(t)}  ${k}`);
}

main();
