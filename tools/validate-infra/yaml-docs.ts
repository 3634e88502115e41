import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { parseAllDocuments } from 'yaml';

/** A problem found in a file: where, and what. */
export class InfraError extends Error {
  constructor(readonly file: string, message: string) {
    super(`${file}: ${message}`);
    this.name = 'InfraError';
  }
}

/**
 * Every document of a YAML file as plain data (anchors, aliases and `<<` merge keys resolved, as
 * Docker Compose and kubectl read them). Empty documents (only comments) are skipped. A syntax
 * error or a duplicate key is an InfraError with the line.
 */
export function readYamlDocuments(file: string, text = readFileSync(file, 'utf8')): unknown[] {
  const docs = parseAllDocuments(text, { merge: true, uniqueKeys: true, prettyErrors: true });
  const list = Array.isArray(docs) ? docs : [docs];
  const out: unknown[] = [];
  for (const doc of list) {
    const problem = doc.errors[0] ?? doc.warnings[0];
    if (problem) throw new InfraError(file, `YAML: ${problem.message.split('\n')[0]}`);
    const value = doc.toJS({ maxAliasCount: 1000 });
    if (value !== null && value !== undefined) out.push(value);
  }
  return out;
}

export function readYamlObject(file: string): Record<string, unknown> {
  const docs = readYamlDocuments(file);
  if (docs.length !== 1 || !isObject(docs[0])) throw new InfraError(file, 'expected exactly one YAML mapping');
  return docs[0];
}

export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The repository root (the folder with package.json), from source or from dist/. */
export function repoRoot(from = __dirname): string {
  let dir = from;
  while (!existsSync(join(dir, 'package.json')) || !existsSync(join(dir, 'k8s'))) {
    const up = dirname(dir);
    if (up === dir) throw new Error(`no repository root above ${from}`);
    dir = up;
  }
  return dir;
}
