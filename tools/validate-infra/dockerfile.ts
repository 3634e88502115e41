/**
 * docker/Dockerfile without a Docker engine: the image is not built here, so this checks what can
 * be checked from the text — stages and their references, that every file copied from the build
 * context exists and is not excluded by .dockerignore, that the commands it runs exist in the
 * compiled layout (dist/<x>.js from <x>.ts), and the image rules: a multi-stage build, production
 * dependencies only, a numeric non-root USER, a HEALTHCHECK, an exec-form CMD.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';

interface Instruction { line: number; op: string; args: string }

export function parseDockerfile(text: string): Instruction[] {
  const out: Instruction[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const start = i;
    let line = lines[i];
    if (/^\s*(#|$)/.test(line)) continue;
    while (line.trimEnd().endsWith('\\') && i + 1 < lines.length) line = line.trimEnd().slice(0, -1) + ' ' + lines[++i].trim();
    const m = /^\s*([A-Za-z]+)\s+(.*)$/.exec(line);
    if (m) out.push({ line: start + 1, op: m[1].toUpperCase(), args: m[2].trim() });
  }
  return out;
}

/** .dockerignore patterns as a predicate (no `!` exceptions: the file uses none). */
function ignorer(root: string): (path: string) => boolean {
  const file = join(root, '.dockerignore');
  if (!existsSync(file)) return () => false;
  const patterns = readFileSync(file, 'utf8').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
  const regexes = patterns.map((p) => new RegExp(`^${p.replace(/^\//, '').replace(/[.+^${}()|[\]\\]/g, '\\$&')
    .replace(/\*\*\//g, '(?:.*/)?').replace(/\*\*/g, '.*').replace(/\*/g, '[^/]*').replace(/\?/g, '[^/]')}(?:/.*)?$`));
  return (path) => regexes.some((r) => r.test(path));
}

const execForm = (args: string): string[] | null => {
  try {
    const v = JSON.parse(args);
    return Array.isArray(v) && v.every((x) => typeof x === 'string') ? v : null;
  } catch {
    return null;
  }
};

/** The compiled script a command runs (`node dist/x.js`) must come from a source file x.ts. */
function scriptProblem(root: string, command: string[]): string | null {
  const script = command.find((c) => c.endsWith('.js'));
  if (!script) return null;
  if (script.startsWith('dist/')) {
    const source = join(root, script.slice('dist/'.length).replace(/\.js$/, '.ts'));
    return existsSync(source) ? null : `${script} has no source ${relative(root, source)}`;
  }
  return existsSync(join(root, script)) ? null : `${script} does not exist`;
}

export function dockerfileErrors(file: string, root: string): string[] {
  const errors: string[] = [];
  const at = (i: Instruction, msg: string) => errors.push(`${relative(root, file)}:${i.line}: ${msg}`);
  const instructions = parseDockerfile(readFileSync(file, 'utf8'));
  const ignored = ignorer(root);
  const stages: { name: string | null; body: Instruction[] }[] = [];
  for (const i of instructions) {
    if (i.op === 'FROM') {
      const m = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(i.args);
      if (!m) { at(i, `cannot read FROM ${i.args}`); continue; }
      stages.push({ name: m[2] ?? null, body: [] });
      continue;
    }
    if (i.op !== 'ARG' && stages.length === 0) at(i, `${i.op} before the first FROM`);
    stages[stages.length - 1]?.body.push(i);
  }
  if (stages.length < 2) errors.push(`${relative(root, file)}: expected a multi-stage build (a build stage and a runtime stage)`);
  const names = new Set(stages.map((s) => s.name).filter(Boolean));

  for (const stage of stages) {
    for (const i of stage.body) {
      if (i.op !== 'COPY' && i.op !== 'ADD') continue;
      const parts = i.args.split(/\s+/);
      const from = parts.find((p) => p.startsWith('--from='))?.slice('--from='.length);
      const paths = parts.filter((p) => !p.startsWith('--'));
      if (from) {
        if (!names.has(from)) at(i, `COPY --from=${from}: no stage is called ${from}`);
        continue;
      }
      for (const src of paths.slice(0, -1)) {
        if (!existsSync(join(root, src))) at(i, `${i.op} ${src}: not in the build context`);
        else if (ignored(src.replace(/^\.\//, '').replace(/\/$/, ''))) at(i, `${i.op} ${src}: excluded by .dockerignore`);
      }
    }
  }

  const runtime = stages[stages.length - 1]?.body ?? [];
  const last = (op: string) => [...runtime].reverse().find((i) => i.op === op);
  const user = last('USER');
  if (!user) errors.push(`${relative(root, file)}: the runtime stage sets no USER (it would run as root)`);
  else if (!/^[1-9]\d*(:\d+)?$/.test(user.args)) at(user, `USER ${user.args}: use a numeric non-root uid, so that Kubernetes' runAsNonRoot can verify it`);
  if (!runtime.some((i) => i.op === 'RUN' && /npm ci\b.*--omit=dev/.test(i.args))) errors.push(`${relative(root, file)}: the runtime stage should install production dependencies only (npm ci --omit=dev)`);
  const health = last('HEALTHCHECK');
  if (!health) errors.push(`${relative(root, file)}: the runtime stage has no HEALTHCHECK`);
  else {
    const cmd = execForm(health.args.replace(/^(--\S+\s+)*CMD\s+/, ''));
    if (!cmd) at(health, 'HEALTHCHECK CMD should be in exec form');
    else { const p = scriptProblem(root, cmd); if (p) at(health, p); }
  }
  const cmd = last('CMD');
  if (!cmd) errors.push(`${relative(root, file)}: the runtime stage has no CMD`);
  else {
    const argv = execForm(cmd.args);
    if (!argv) at(cmd, 'CMD should be in exec form (signals reach node directly)');
    else { const p = scriptProblem(root, argv); if (p) at(cmd, p); }
  }
  return errors;
}
