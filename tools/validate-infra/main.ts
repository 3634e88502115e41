/**
 * npm run validate:infra (after npm run build): validates docker/ and k8s/ offline and prints what
 * was checked. Exit 0 when everything passes, 1 otherwise.
 *
 *   node dist/tools/validate-infra/main.js [--kubectl | --no-kubectl]
 *
 * By default each kustomize render is also compared with `kubectl kustomize` when kubectl is
 * installed; --kubectl makes that comparison required, --no-kubectl skips it.
 */
import { validateInfra } from './validate';

function main(): number {
  const args = process.argv.slice(2);
  const unknown = args.filter((a) => a !== '--kubectl' && a !== '--no-kubectl');
  if (unknown.length) {
    process.stderr.write(`validate-infra: unknown argument ${unknown[0]}\nusage: validate-infra [--kubectl | --no-kubectl]\n`);
    return 2;
  }
  const kubectl = args.includes('--kubectl') ? true : args.includes('--no-kubectl') ? false : 'auto';
  const started = Date.now();
  const checks = validateInfra({ kubectl });
  let failed = 0;
  for (const c of checks) {
    process.stdout.write(`${c.errors.length ? 'FAIL' : 'ok  '}  ${c.name}${c.notes.length ? `  — ${c.notes.join('; ')}` : ''}\n`);
    for (const e of c.errors) process.stdout.write(`        ${e}\n`);
    if (c.errors.length) failed++;
  }
  process.stdout.write(`validate-infra: ${checks.length - failed} passed, ${failed} failed (${Date.now() - started} ms)\n`);
  return failed ? 1 : 0;
}

process.exitCode = main();
