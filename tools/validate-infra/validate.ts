/**
 * Validates docker/ and k8s/ offline (no Docker engine, no cluster): see each module for what it
 * checks. Every kustomization under k8s/ is rendered and validated, so a new overlay is covered
 * without changing this file. Used by `npm run validate:infra` (main.ts) and test/infra.
 */
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { composeErrors } from './compose';
import { dockerfileErrors } from './dockerfile';
import { coordinatorConfig, coordinatorConfigError, coordinatorVariables, participantConfigError, participantVariables } from './env';
import { K8sObject, kubectlVersion, kustomizationFile, render, Rendered, renderWithKubectl, resourceId } from './kustomize';
import { containersOf, podTemplates, referenceErrors, schemaErrors, unknownFieldErrors } from './kubernetes';
import { InfraError, isObject, readYamlDocuments, repoRoot } from './yaml-docs';

export const REPO_ROOT = repoRoot();

export interface Check {
  name: string;
  errors: string[];
  notes: string[];
}

export interface ValidateOptions {
  root?: string;
  /** Compare each render with `kubectl kustomize`: 'auto' (when kubectl exists), true (required), false. */
  kubectl?: boolean | 'auto';
}

/** Valid stand-ins for the production Secrets' placeholders, to check everything else around them. */
export const SAMPLE_SECRET_VALUES: Record<string, string> = {
  DATABASE_URL: 'postgres://txcoord:sample@db.example.com:5432/txcoord?sslmode=require',
  COORDINATOR_API_KEYS: 'sample-api-key-0123456789',
  TX_MESSAGE_SECRET: 'sample-message-secret-0123456789',
};
const PLACEHOLDER = 'REPLACE_ME';

/** Every folder under k8s/ with a kustomization, parents first. */
export function kustomizeRoots(root: string): string[] {
  const out: string[] = [];
  const walk = (dir: string) => {
    if (kustomizationFile(dir)) out.push(relative(root, dir));
    for (const e of readdirSync(dir).sort()) if (statSync(join(dir, e)).isDirectory()) walk(join(dir, e));
  };
  walk(join(root, 'k8s'));
  return out;
}

/** Secrets that exist outside the renders: k8s/**\/*.template.yaml (created by hand from them). */
export function templateManifests(root: string): Rendered[] {
  const out: Rendered[] = [];
  const walk = (dir: string) => {
    for (const e of readdirSync(dir).sort()) {
      const p = join(dir, e);
      if (statSync(p).isDirectory()) walk(p);
      else if (e.endsWith('.template.yaml')) for (const d of readYamlDocuments(p)) out.push({ source: relative(root, p), resource: d as K8sObject });
    }
  };
  walk(join(root, 'k8s'));
  return out;
}

function attempt(name: string, f: (c: Check) => void): Check {
  const c: Check = { name, errors: [], notes: [] };
  try {
    f(c);
  } catch (err) {
    c.errors.push(err instanceof InfraError ? err.message : `${(err as Error).stack ?? String(err)}`);
  }
  return c;
}

/** A container's environment: names, and values resolved from ConfigMaps and Secrets. */
function containerEnv(c: Record<string, unknown>, resources: K8sObject[]): { names: string[]; values: Record<string, string | undefined>; sources: Map<string, string> } {
  const names: string[] = [];
  const values: Record<string, string | undefined> = {};
  const sources = new Map<string, string>();
  const data = (kind: string, name: string) => {
    const r = resources.find((x) => x.kind === kind && x.metadata.name === name);
    return { ...((r?.data as Record<string, string>) ?? {}), ...((r?.stringData as Record<string, string>) ?? {}) };
  };
  for (const from of (c.envFrom as Record<string, { name: string }>[]) ?? []) {
    const kind = from.configMapRef ? 'ConfigMap' : 'Secret';
    for (const [k, v] of Object.entries(data(kind, (from.configMapRef ?? from.secretRef).name))) {
      names.push(k);
      values[k] = String(v);
      sources.set(k, `${kind} ${(from.configMapRef ?? from.secretRef).name}`);
    }
  }
  for (const e of (c.env as { name: string; value?: string; valueFrom?: Record<string, { name: string; key: string; optional?: boolean }> }[]) ?? []) {
    names.push(e.name);
    const cm = e.valueFrom?.configMapKeyRef;
    const sec = e.valueFrom?.secretKeyRef;
    values[e.name] = e.value ?? (cm ? data('ConfigMap', cm.name)[cm.key] : sec ? data('Secret', sec.name)[sec.key] : undefined);
    sources.set(e.name, cm ? `ConfigMap ${cm.name}` : sec ? `Secret ${sec.name}${sec.optional ? ' (optional)' : ''}` : 'value');
  }
  return { names, values, sources };
}

/** The app a container runs, from its command. */
function appOf(c: Record<string, unknown>): { app: 'coordinator' | 'migrate' | 'participant'; args: string[] } | null {
  const command = [...((c.command as string[]) ?? []), ...((c.args as string[]) ?? [])];
  const i = command.findIndex((x) => x.endsWith('.js'));
  if (i < 0) return null;
  const args = command.slice(i + 1);
  if (command[i].endsWith('apps/coordinator/main.js')) return { app: 'coordinator', args };
  if (command[i].endsWith('apps/coordinator/migrate.js')) return { app: 'migrate', args };
  if (command[i].endsWith('apps/participant-example/main.js')) return { app: 'participant', args };
  return null;
}

/**
 * The project's own rules on one render: each txcoord container sets only variables its app reads
 * and would start with the values it gets; DATABASE_URL comes from a required Secret key (the
 * embedded default must never run in a pod); the container port is the configured PORT; the
 * Kafka topics exist for every participant and the coordinator topic has a partition per replica.
 */
function projectErrors(items: Rendered[], external: K8sObject[], topics: K8sObject[]): string[] {
  const errors: string[] = [];
  const resources = items.map((i) => i.resource);
  // Secrets of the render first; else the hand-made ones, placeholders replaced by valid samples.
  const samples = external.map((s) => ({
    ...s,
    stringData: Object.fromEntries(Object.entries((s.stringData as Record<string, string>) ?? {})
      .map(([k, v]) => [k, v === PLACEHOLDER ? SAMPLE_SECRET_VALUES[k] ?? v : v])),
  })) as K8sObject[];
  const withSecrets = [...resources, ...samples.filter((s) => !resources.some((r) => r.kind === 'Secret' && r.metadata.name === s.metadata.name))];
  const coordinatorVars = coordinatorVariables();
  const participantVars = participantVariables();
  const participants: string[] = [];

  for (const pod of podTemplates(resources)) {
    for (const c of containersOf(pod)) {
      const app = appOf(c);
      if (!app) continue;
      const at = `${resourceId(pod.owner)}: container ${c.name}`;
      const env = containerEnv(c, withSecrets);
      const known = app.app === 'participant' ? participantVars : coordinatorVars;
      for (const n of env.names) {
        if (!known.has(n)) errors.push(`${at}: sets ${n} (from ${env.sources.get(n)}), which the ${app.app === 'migrate' ? 'coordinator' : app.app} does not read`);
      }
      if (app.app === 'participant') {
        const problem = participantConfigError(app.args, env.values);
        if (problem) errors.push(`${at}: the participant would not start: ${problem}`);
        const name = app.args[app.args.indexOf('--name') + 1];
        if (name) participants.push(name);
        continue;
      }
      const db = env.sources.get('DATABASE_URL');
      if (!db?.startsWith('Secret ') || db.endsWith('(optional)')) errors.push(`${at}: DATABASE_URL must come from a required Secret key (the embedded default must never run in a pod)`);
      if (env.names.includes('TX_EMBEDDED_DATA_DIR')) errors.push(`${at}: TX_EMBEDDED_DATA_DIR has no place on Kubernetes`);
      const problem = coordinatorConfigError(env.values);
      if (problem) { errors.push(`${at}: the coordinator would not start: ${problem}`); continue; }
      if (app.app === 'coordinator') {
        const port = coordinatorConfig(env.values).port;
        const ports = ((c.ports as { containerPort: number }[]) ?? []).map((p) => p.containerPort);
        if (!ports.includes(port)) errors.push(`${at}: the coordinator listens on PORT ${port}, but the container declares ports ${ports.join(', ') || 'none'}`);
      }
    }
  }

  // Topics: against the render's own KafkaTopics, or those of k8s/topics when the render has none.
  const own = resources.filter((r) => r.kind === 'KafkaTopic');
  const kafkaTopics = own.length ? own : topics;
  const topicNames = new Map(kafkaTopics.map((t) => [String((t.spec as { topicName?: string }).topicName ?? t.metadata.name), t]));
  for (const t of kafkaTopics) {
    if (!t.metadata.labels?.['strimzi.io/cluster']) errors.push(`${resourceId(t)}: needs the label strimzi.io/cluster naming its Kafka cluster`);
  }
  const prefix = resources.filter((r) => r.kind === 'ConfigMap').map((r) => (r.data as Record<string, string>)?.TX_TOPIC_PREFIX).find((p) => p !== undefined);
  if (prefix !== undefined && kafkaTopics.length) {
    for (const needed of [`${prefix}coordinator`, `${prefix}dead-letter`, ...participants.map((p) => `${prefix}participant.${p}`)]) {
      if (!topicNames.has(needed)) errors.push(`no KafkaTopic for topic ${needed}`);
    }
    const coordinatorTopic = topicNames.get(`${prefix}coordinator`);
    const partitions = (coordinatorTopic?.spec as { partitions?: number } | undefined)?.partitions;
    for (const hpa of resources.filter((r) => r.kind === 'HorizontalPodAutoscaler')) {
      const max = (hpa.spec as { maxReplicas: number }).maxReplicas;
      if (partitions !== undefined && max > partitions) errors.push(`${resourceId(hpa)}: maxReplicas ${max} exceeds the ${partitions} partitions of ${prefix}coordinator: extra replicas would consume nothing`);
    }
  }
  return errors;
}

/**
 * `docker-compose config -q` (Debian's docker-compose 1.29: a Compose implementation that needs no
 * engine for this): null when it is not installed.
 */
export function dockerComposeConfig(file: string): { ok: boolean; version: string; output: string } | null {
  const run = (args: string[]) => spawnSync('docker-compose', args, { encoding: 'utf8', timeout: 60_000, env: { PATH: process.env.PATH ?? '' } });
  const v = run(['version', '--short']);
  if (v.error || v.status !== 0) return null;
  const r = run(['-f', file, 'config', '-q']);
  return { ok: r.status === 0, version: `docker-compose ${v.stdout.trim()}`, output: `${r.stderr}${r.stdout}`.trim() };
}

/** Runs every check; each Check lists its errors (none: passed). */
export function validateInfra(opts: ValidateOptions = {}): Check[] {
  const root = opts.root ?? REPO_ROOT;
  const checks: Check[] = [];
  checks.push(attempt('docker/Dockerfile', (c) => {
    c.errors.push(...dockerfileErrors(join(root, 'docker', 'Dockerfile'), root));
    c.notes.push('stages, COPY sources vs .dockerignore, entry scripts, non-root numeric USER, HEALTHCHECK (not built: no Docker engine here)');
  }));
  checks.push(attempt('docker/compose.yaml', (c) => {
    const file = join(root, 'docker', 'compose.yaml');
    c.errors.push(...composeErrors(file));
    c.notes.push('compose-spec JSON schema, references, and the apps\' configuration on its environment');
    const real = dockerComposeConfig(file);
    if (real === null) c.notes.push('docker-compose not installed: not checked by a Compose implementation');
    else if (real.ok) c.notes.push(`accepted by \`${real.version} config\``);
    else c.errors.push(`${relative(root, file)}: ${real.version} config: ${real.output}`);
  }));

  const templates = templateManifests(root);
  const externalSecrets = templates.map((t) => t.resource).filter((r) => r.kind === 'Secret');
  checks.push(attempt('k8s secrets templates', (c) => {
    c.errors.push(...schemaErrors(templates), ...unknownFieldErrors(templates));
    const placeholders = Object.fromEntries(externalSecrets.filter((s) => s.metadata.name === 'txcoord-coordinator')
      .flatMap((s) => Object.entries((s.stringData as Record<string, string>) ?? {})));
    if (Object.keys(placeholders).length) {
      const problem = coordinatorConfigError(placeholders);
      if (!problem) c.errors.push('the production Secret template\'s placeholders would start a coordinator: they must be invalid on purpose');
      else c.notes.push(`unreplaced placeholders stop the coordinator: "${problem}"`);
    }
    c.notes.push(`${templates.length} resources in ${new Set(templates.map((t) => t.source)).size} template file(s)`);
  }));

  const useKubectl = opts.kubectl ?? 'auto';
  const version = useKubectl === false ? null : kubectlVersion();
  if (useKubectl === true && !version) checks.push({ name: 'kubectl kustomize', errors: ['kubectl is required (--kubectl) but not installed'], notes: [] });

  const topics = topicsOf(root);
  for (const dir of kustomizeRoots(root)) {
    checks.push(attempt(dir, (c) => {
      const r = checkKustomization(root, dir, { externalSecrets, topics, kubectl: version ? true : false });
      c.errors.push(...r.errors);
      c.notes.push(...r.notes);
      if (!version && useKubectl !== false) c.notes.push('kubectl not installed: not compared with the real kustomize');
      else if (version && !r.errors.length) c.notes.push(`identical to \`kubectl kustomize\` (${version})`);
    }));
  }
  return checks;
}

/** The KafkaTopics of k8s/topics (empty when it does not render: its own check reports why). */
export function topicsOf(root: string): K8sObject[] {
  try {
    return render(join(root, 'k8s', 'topics'), root).map((r) => r.resource).filter((r) => r.kind === 'KafkaTopic');
  } catch {
    return [];
  }
}

/**
 * One kustomization: rendered, then schema, unknown fields, references and the project's rules;
 * with `kubectl`, also compared with `kubectl kustomize`.
 */
export function checkKustomization(root: string, dir: string, opts: { externalSecrets?: K8sObject[]; topics?: K8sObject[]; kubectl?: boolean } = {}): { errors: string[]; notes: string[] } {
  const externalSecrets = opts.externalSecrets ?? templateManifests(root).map((t) => t.resource).filter((r) => r.kind === 'Secret');
  const items = render(join(root, dir), root);
  const errors = [...schemaErrors(items), ...unknownFieldErrors(items), ...referenceErrors(items, externalSecrets),
    ...projectErrors(items, externalSecrets, opts.topics ?? topicsOf(root))];
  const notes = [`${items.length} resources: ${[...new Set(items.map((i) => i.resource.kind))].join(', ')}`];
  if (opts.kubectl) {
    const real = renderWithKubectl(join(root, dir));
    if (real) errors.push(...compareRenders(items.map((i) => i.resource), real, dir));
  }
  return { errors, notes };
}

/** Differences between this renderer's output and kubectl's, resource by resource. */
export function compareRenders(ours: K8sObject[], theirs: K8sObject[], dir: string): string[] {
  const errors: string[] = [];
  const key = (r: K8sObject) => resourceId(r);
  const mine = new Map(ours.map((r) => [key(r), r]));
  const real = new Map(theirs.map((r) => [key(r), r]));
  for (const k of mine.keys()) if (!real.has(k)) errors.push(`${dir}: ${k} rendered here but not by kubectl kustomize`);
  for (const [k, r] of real) {
    const m = mine.get(k);
    if (!m) errors.push(`${dir}: ${k} rendered by kubectl kustomize but not here`);
    else if (canonical(m) !== canonical(r)) errors.push(`${dir}: ${k} differs from kubectl kustomize's rendering: ${firstDifference(m, r)}`);
  }
  return errors;
}

function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (isObject(v)) return `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${canonical(v[k])}`).join(',')}}`;
  return JSON.stringify(v);
}

function firstDifference(a: unknown, b: unknown, path = ''): string {
  if (canonical(a) === canonical(b)) return '';
  if (isObject(a) && isObject(b)) {
    for (const k of new Set([...Object.keys(a), ...Object.keys(b)])) {
      if (canonical(a[k]) !== canonical(b[k])) return firstDifference(a[k], b[k], `${path}/${k}`);
    }
  }
  if (Array.isArray(a) && Array.isArray(b) && a.length === b.length) {
    for (let i = 0; i < a.length; i++) if (canonical(a[i]) !== canonical(b[i])) return firstDifference(a[i], b[i], `${path}/${i}`);
  }
  return `${path || '/'}: ${JSON.stringify(a)?.slice(0, 120)} here, ${JSON.stringify(b)?.slice(0, 120)} in kubectl's`;
}
