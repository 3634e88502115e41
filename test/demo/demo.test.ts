/**
 * `npm run demo` as a user runs it, shortened: the built demo (dist/tools/demo/main.js) with no
 * DATABASE_URL and no KAFKA_BROKERS, so the coordinator and the example participants run on
 * embedded Postgres and talk over HTTP. It must finish by itself, exit 0 and end with its table.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const ROOT = join(__dirname, '..', '..');
/** Its own folder, so that runs at the same time cannot meet (the template is made each time). */
const DATA = mkdtempSync(join(tmpdir(), 'txdemo-'));

afterAll(() => rmSync(DATA, { recursive: true, force: true }));

jest.setTimeout(240_000);

test('runs a short stream on the embedded defaults and prints the outcome table', async () => {
  const env: Record<string, string> = { PATH: process.env.PATH ?? '' };
  const child = spawn(process.execPath, [join(ROOT, 'dist', 'tools', 'demo', 'main.js'), '--transactions', '20', '--rate', '5', '--data-dir', DATA], {
    cwd: ROOT,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  const started = Date.now();
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  const seconds = (Date.now() - started) / 1000;
  if (code !== 0) throw new Error(`demo exited ${code} after ${seconds} s:\n${out}`);

  const lines = out.split('\n');
  expect(out).toMatch(/databases: embedded Postgres \(PGlite\)/);
  expect(out).toMatch(/protocol: +HTTP/);
  // Live progress, a line per second.
  expect(lines.filter((l) => /^\[ *\d+s\] begun \d+\/20 +committed \d+ +aborted \d+ +in flight \d+/.test(l)).length).toBeGreaterThanOrEqual(3);
  // The restart halfway and the late participant.
  expect(out).toMatch(/>> restarting store/);
  expect(out).toMatch(/>> store is back after/);
  expect(out).toMatch(/>> late is up after/);
  expect(out).toMatch(/^20 transactions in [\d.]+ s: committed \d+, aborted \d+; every one finished/m);

  // The table: a header, one row per outcome and reason with p50/p95/max, and the total.
  const header = lines.findIndex((l) => /^\s+outcome\s+reason\s+count\s+p50\s+p95\s+max$/.test(l));
  expect(header).toBeGreaterThan(0);
  const duration = String.raw`\d+(?:\.\d+)? m?s`;
  const row = new RegExp(String.raw`^\s+(commit|abort|total)\s+(\S*)\s+(\d+)\s+(${duration})\s+(${duration})\s+(${duration})$`);
  const rows = lines.slice(header + 1).map((l) => row.exec(l)).filter((m): m is RegExpExecArray => m !== null);
  const byKey = new Map(rows.map((m) => [`${m[1]} ${m[2]}`.trim(), Number(m[3])]));
  expect(byKey.get('commit -')).toBeGreaterThan(0);
  expect(byKey.get('abort vote-no')).toBeGreaterThanOrEqual(1); // 3 and 13 (unless a timeout came first)
  // 7 and 17 enlist `late`: no vote by the deadline (timeout:prepare), or on a slow machine the
  // deadline passed before the commit request (timeout:active).
  const timeouts = [...byKey].filter(([k]) => k.startsWith('abort timeout:')).reduce((n, [, v]) => n + v, 0);
  expect(timeouts).toBeGreaterThanOrEqual(2);
  expect(byKey.get('total')).toBe(20);
  expect([...byKey].filter(([k]) => k !== 'total').reduce((n, [, v]) => n + v, 0)).toBe(20);
  expect(out).toMatch(/all stopped cleanly/);
  expect(out).toMatch(/^demo finished$/m);
});
