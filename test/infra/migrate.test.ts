/**
 * dist/apps/coordinator/migrate.js, the Kubernetes migration Job's command: migrates a fresh
 * database and exits, finds nothing to do the second time, lets concurrent runs take turns, and
 * refuses to run without DATABASE_URL or with a bad configuration.
 */
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { dropCreatedDatabases, freshDatabase, query } from '../support/postgres';

const ROOT = join(__dirname, '..', '..');
const RUN = `txmig_${randomUUID().slice(0, 8)}`;

afterAll(() => dropCreatedDatabases());

function migrate(env: Record<string, string>): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(ROOT, 'dist', 'apps', 'coordinator', 'migrate.js')], {
      env: { PATH: process.env.PATH ?? '', ...env }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.once('error', reject);
    child.once('exit', (code) => { clearTimeout(timer); resolve({ code, stdout, stderr }); });
  });
}

const tables = (url: string) => query<{ name: string }>(url, `SELECT table_name AS name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1`)
  .then((rows) => rows.map((r) => r.name));

describe('migrate.js', () => {
  it('migrates a fresh database, then finds it up to date', async () => {
    const url = await freshDatabase(`${RUN}_fresh`);
    const first = await migrate({ DATABASE_URL: url });
    expect(first).toMatchObject({ code: 0, stderr: '' });
    expect(first.stdout).toMatch(/^migrate: applied DecisionLog1763900000000, .*Audit1795400000000.* in \d+ ms\n$/);
    expect(await tables(url)).toEqual(expect.arrayContaining(['migrations', 'tx_audit', 'tx_participant', 'tx_transaction']));

    const second = await migrate({ DATABASE_URL: url });
    expect(second.code).toBe(0);
    expect(second.stdout).toMatch(/^migrate: schema up to date \(\d+ migrations: DecisionLog1763900000000, .*Audit1795400000000.*\)\n$/);
  });

  it('lets concurrent runs take turns: each migration is applied once', async () => {
    const url = await freshDatabase(`${RUN}_concurrent`);
    const runs = await Promise.all([1, 2, 3].map(() => migrate({ DATABASE_URL: url })));
    expect(runs.map((r) => r.code)).toEqual([0, 0, 0]);
    expect(runs.filter((r) => r.stdout.includes('applied'))).toHaveLength(1);
    const applied = await query<{ name: string }>(url, 'SELECT name FROM migrations');
    expect(new Set(applied.map((m) => m.name)).size).toBe(applied.length);
  });

  it('refuses to run without DATABASE_URL, or with a bad configuration', async () => {
    const none = await migrate({});
    expect(none.code).toBe(1);
    expect(none.stderr).toBe('migrate: DATABASE_URL is required (the embedded store is migrated by the coordinator that owns it)\n');
    const bad = await migrate({ DATABASE_URL: 'mysql://x' });
    expect(bad.code).toBe(1);
    expect(bad.stderr).toBe('migrate: configuration error: DATABASE_URL must be a postgres:// or postgresql:// URL (got "mysql://x")\n');
    const down = await migrate({ DATABASE_URL: 'postgres://postgres@127.0.0.1:1/none' });
    expect(down.code).toBe(1);
    expect(down.stderr).toMatch(/^migrate: failed: .*ECONNREFUSED/);
  });
});
