/**
 * Kubernetes manifests against the Kubernetes API's schemas, offline:
 *
 *  - schema: each resource through the JSON-schema validator that the npm package kubernetes-models
 *    (4.5.1, generated from the Kubernetes 1.33 OpenAPI document) compiles with ajv: types,
 *    required fields, enums, formats. Strimzi's KafkaTopic (no package ships its schema) against
 *    the schema below, written from Strimzi's v1beta2 CRD.
 *  - strict: unknown fields (a misspelt `readinesProbe` is silently dropped by the API server):
 *    each resource is type-checked as an object literal against the same package's TypeScript
 *    types, whose excess-property check rejects any field the API does not have.
 *  - references: what schemas cannot see — selectors that select the pods, Services' target
 *    ports, probes' ports, the HPA's target and CPU requests, ConfigMap and Secret references and
 *    keys, one namespace per render, and the project's pod security rules.
 */
import Ajv from 'ajv';
import { dirname, join } from 'node:path';
import ts from 'typescript';
import { isObject, repoRoot } from './yaml-docs';
import { K8sObject, Rendered, resourceId } from './kustomize';

const ROOT = repoRoot();

// --- schema --------------------------------------------------------------------------------

const STRIMZI_TOPIC = 'kafka.strimzi.io/v1beta2 KafkaTopic';

/** Strimzi KafkaTopic spec, from the v1beta2 CRD (spec fields only; metadata is checked as ObjectMeta). */
const kafkaTopicSchema = {
  type: 'object',
  required: ['apiVersion', 'kind', 'metadata', 'spec'],
  additionalProperties: false,
  properties: {
    apiVersion: { const: 'kafka.strimzi.io/v1beta2' },
    kind: { const: 'KafkaTopic' },
    metadata: { type: 'object' },
    spec: {
      type: 'object',
      additionalProperties: false,
      properties: {
        topicName: { type: 'string', pattern: '^[a-zA-Z0-9._-]{1,249}$' },
        partitions: { type: 'integer', minimum: 1 },
        replicas: { type: 'integer', minimum: 1, maximum: 32767 },
        config: { type: 'object', additionalProperties: { type: ['string', 'number', 'boolean'] } },
      },
    },
    status: { type: 'object' },
  },
};
const KAFKA_TOPIC_TS = `{ apiVersion: 'kafka.strimzi.io/v1beta2'; kind: 'KafkaTopic'; metadata: import('@kubernetes-models/apimachinery/apis/meta/v1/ObjectMeta').IObjectMeta;
  spec: { topicName?: string; partitions?: number; replicas?: number; config?: { [key: string]: string | number | boolean } } }`;

let ajv: Ajv | undefined;
/** The previous check's program: its kubernetes-models declaration files are reused, not parsed again. */
let previous: ts.Program | undefined;

/** The kubernetes-models module of a kind, e.g. kubernetes-models/apps/v1/Deployment. */
function modelModule(apiVersion: string, kind: string): string | null {
  const spec = `kubernetes-models/${apiVersion}/${kind}`;
  try {
    require.resolve(spec);
    return spec;
  } catch {
    return null;
  }
}

interface ValidationIssue { instancePath?: string; message?: string; params?: Record<string, unknown> }

/** Schema errors of every resource, as `file: apiVersion kind ns/name: /path message`. */
export function schemaErrors(items: Rendered[]): string[] {
  const errors: string[] = [];
  for (const { source, resource } of items) {
    const at = `${source}: ${resourceId(resource)}`;
    const issues: ValidationIssue[] = [];
    if (`${resource.apiVersion} ${resource.kind}` === STRIMZI_TOPIC) {
      ajv ??= new Ajv({ allErrors: true, strict: true, allowUnionTypes: true });
      const check = ajv.getSchema('kafkatopic') ?? (ajv.addSchema(kafkaTopicSchema, 'kafkatopic'), ajv.getSchema('kafkatopic')!);
      if (!check(resource)) issues.push(...(check.errors ?? []));
      issues.push(...modelIssues('@kubernetes-models/apimachinery/apis/meta/v1/ObjectMeta', 'ObjectMeta', resource.metadata, '/metadata'));
    } else {
      const mod = modelModule(resource.apiVersion, resource.kind);
      if (!mod) {
        errors.push(`${at}: no schema for ${resource.apiVersion} ${resource.kind} (not a Kubernetes 1.33 kind, nor a known custom resource)`);
        continue;
      }
      issues.push(...modelIssues(mod, resource.kind, resource, ''));
    }
    for (const i of issues) {
      const extra = i.params && 'additionalProperty' in i.params ? ` (${String(i.params.additionalProperty)})` : '';
      errors.push(`${at}: ${i.instancePath || '/'} ${i.message}${extra}`);
    }
  }
  return errors;
}

function modelIssues(mod: string, exportName: string, data: unknown, prefix: string): ValidationIssue[] {
  const Model = require(mod)[exportName] as new (d: unknown) => { validate(): void };
  try {
    new Model(data).validate();
    return [];
  } catch (err) {
    const list = (err as { errors?: ValidationIssue[] }).errors;
    if (!list) return [{ instancePath: prefix, message: (err as Error).message }];
    return list.map((i) => ({ ...i, instancePath: prefix + (i.instancePath ?? '') }));
  }
}

// --- strict: unknown fields ------------------------------------------------------------------

/** Emits a value as a TypeScript literal, one property per line, remembering each line's path. */
function emitLiteral(value: unknown, path: string, lines: string[], paths: string[], indent: string, prefix: string, suffix: string): void {
  const push = (text: string, p: string) => { lines.push(text); paths.push(p); };
  if (Array.isArray(value)) {
    push(`${indent}${prefix}[`, path);
    value.forEach((v, i) => emitLiteral(v, `${path}/${i}`, lines, paths, `${indent}  `, '', ','));
    push(`${indent}]${suffix}`, path);
  } else if (isObject(value)) {
    push(`${indent}${prefix}{`, path);
    // Plain identifiers stay unquoted, so that TypeScript suggests the right name for a misspelt one.
    for (const [k, v] of Object.entries(value)) emitLiteral(v, `${path}/${k}`, lines, paths, `${indent}  `, `${/^[A-Za-z_$][\w$]*$/.test(k) ? k : JSON.stringify(k)}: `, ',');
    push(`${indent}}${suffix}`, path);
  } else {
    push(`${indent}${prefix}${JSON.stringify(value)}${suffix}`, path);
  }
}

/**
 * Unknown fields anywhere in the resources: TypeScript's excess-property check of each resource,
 * written as an object literal, against kubernetes-models' interface of its kind.
 */
export function unknownFieldErrors(items: Rendered[]): string[] {
  const lines: string[] = [];
  const paths: string[] = [];
  const owner: (number | null)[] = [];
  const errors: string[] = [];
  const mark = (n: number | null) => { while (owner.length < lines.length) owner.push(n); };
  items.forEach(({ resource }, n) => {
    let type: string;
    if (`${resource.apiVersion} ${resource.kind}` === STRIMZI_TOPIC) {
      type = KAFKA_TOPIC_TS;
    } else {
      const mod = modelModule(resource.apiVersion, resource.kind);
      if (!mod) return; // reported by schemaErrors
      type = `import(${JSON.stringify(mod)}).I${resource.kind}`;
    }
    lines.push(`export const r${n}: ${type} =`);
    paths.push('');
    mark(null);
    emitLiteral(resource, '', lines, paths, '', '', ';');
    mark(n);
  });
  if (lines.length === 0) return errors;

  const file = join(ROOT, '__validate_infra__.ts');
  const source = lines.join('\n');
  const options: ts.CompilerOptions = {
    noEmit: true, strict: true, skipLibCheck: true, types: [], lib: ['lib.es5.d.ts'], target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.CommonJS, moduleResolution: ts.ModuleResolutionKind.Node10,
  };
  const host = ts.createCompilerHost(options);
  const getSourceFile = host.getSourceFile.bind(host);
  host.getSourceFile = (f, lang, ...rest) => (f === file ? ts.createSourceFile(f, source, lang) : getSourceFile(f, lang, ...rest));
  const fileExists = host.fileExists.bind(host);
  host.fileExists = (f) => f === file || fileExists(f);
  const readFile = host.readFile.bind(host);
  host.readFile = (f) => (f === file ? source : readFile(f));
  host.getCurrentDirectory = () => dirname(file);

  const program = ts.createProgram([file], options, host, previous);
  previous = program;
  for (const d of ts.getPreEmitDiagnostics(program)) {
    const message = ts.flattenDiagnosticMessageText(d.messageText, ' ');
    if (!d.file || d.file.fileName !== file || d.start === undefined) {
      errors.push(`type check: ${message}`);
      continue;
    }
    const { line } = d.file.getLineAndCharacterOfPosition(d.start);
    const n = owner[line];
    if (n === null || n === undefined) {
      errors.push(`type check: ${message}`);
      continue;
    }
    const { source: src, resource } = items[n];
    // Only unknown fields here: wrong types and missing fields are the schema validator's to report.
    if (d.code !== 2353 && d.code !== 2561) continue;
    errors.push(`${src}: ${resourceId(resource)}: ${paths[line] || '/'}: unknown field: ${message}`);
  }
  return errors;
}

// --- references ------------------------------------------------------------------------------

type Pod = { owner: K8sObject; labels: Record<string, string>; spec: Record<string, unknown> };
type Container = Record<string, unknown> & { name: string };

export function podTemplates(items: K8sObject[]): Pod[] {
  const pods: Pod[] = [];
  for (const r of items) {
    const spec = r.spec as Record<string, unknown> | undefined;
    const template = (r.kind === 'CronJob' ? (((spec?.jobTemplate as Record<string, unknown>)?.spec as Record<string, unknown>)?.template) : spec?.template) as
      { metadata?: { labels?: Record<string, string> }; spec?: Record<string, unknown> } | undefined;
    if (template?.spec) pods.push({ owner: r, labels: template.metadata?.labels ?? {}, spec: template.spec });
  }
  return pods;
}

export function containersOf(pod: { spec: Record<string, unknown> }): Container[] {
  return [...((pod.spec.initContainers as Container[]) ?? []), ...((pod.spec.containers as Container[]) ?? [])];
}

function selects(selector: Record<string, string> | undefined, labels: Record<string, string>): boolean {
  if (!selector || Object.keys(selector).length === 0) return true;
  return Object.entries(selector).every(([k, v]) => labels[k] === v);
}

function matchLabelsOf(sel: unknown): Record<string, string> | undefined {
  if (!isObject(sel)) return undefined;
  if (sel.matchExpressions) return undefined; // not used here; treated as "selects something"
  return (sel.matchLabels as Record<string, string>) ?? {};
}

/**
 * Cross-references inside one render. `externalSecrets`: Secrets that exist outside it (the
 * production overlay's Secrets are created by hand from its template).
 */
export function referenceErrors(items: Rendered[], externalSecrets: K8sObject[] = []): string[] {
  const errors: string[] = [];
  const resources = items.map((i) => i.resource);
  const sourceOf = new Map(items.map((i) => [i.resource, i.source]));
  const err = (r: K8sObject, msg: string) => errors.push(`${sourceOf.get(r) ?? '?'}: ${resourceId(r)}: ${msg}`);
  const pods = podTemplates(resources);
  const byKind = (kind: string) => resources.filter((r) => r.kind === kind);
  const find = (kind: string, name: string) => [...resources, ...(kind === 'Secret' ? externalSecrets : [])].find((r) => r.kind === kind && r.metadata.name === name);

  const namespaces = new Set(resources.map((r) => r.metadata.namespace ?? ''));
  if (namespaces.size > 1) errors.push(`one render spans several namespaces: ${[...namespaces].join(', ')}`);

  for (const pod of pods) {
    const r = pod.owner;
    if (r.kind === 'Deployment' || r.kind === 'StatefulSet' || r.kind === 'DaemonSet') {
      const sel = matchLabelsOf((r.spec as Record<string, unknown>).selector);
      if (sel && !selects(sel, pod.labels)) err(r, 'spec.selector does not select its own pod template labels');
    }
    // Pod security: the rules every txcoord pod follows.
    const psc = (pod.spec.securityContext ?? {}) as Record<string, unknown>;
    if (psc.runAsNonRoot !== true) err(r, 'pod securityContext.runAsNonRoot must be true');
    if (pod.spec.automountServiceAccountToken !== false) err(r, 'automountServiceAccountToken must be false (no pod talks to the Kubernetes API)');
    for (const c of containersOf(pod)) {
      const sc = (c.securityContext ?? {}) as Record<string, unknown>;
      const caps = (sc.capabilities ?? {}) as { drop?: string[]; add?: string[] };
      if (sc.readOnlyRootFilesystem !== true) err(r, `container ${c.name}: securityContext.readOnlyRootFilesystem must be true`);
      if (sc.allowPrivilegeEscalation !== false) err(r, `container ${c.name}: securityContext.allowPrivilegeEscalation must be false`);
      if (!caps.drop?.includes('ALL')) err(r, `container ${c.name}: securityContext.capabilities.drop must include ALL`);
      if (caps.add?.length) err(r, `container ${c.name}: must not add capabilities`);
      const res = (c.resources ?? {}) as { requests?: Record<string, unknown>; limits?: Record<string, unknown> };
      if (!res.requests?.cpu || !res.requests?.memory || !res.limits?.memory) err(r, `container ${c.name}: needs cpu and memory requests and a memory limit`);
      // Probes use declared ports.
      const portNames = new Set(((c.ports as { name?: string }[]) ?? []).map((p) => p.name).filter(Boolean));
      for (const probe of ['startupProbe', 'livenessProbe', 'readinessProbe']) {
        const port = ((c[probe] as Record<string, Record<string, unknown>> | undefined)?.httpGet)?.port;
        if (typeof port === 'string' && !portNames.has(port)) err(r, `container ${c.name}: ${probe} uses port "${port}", which the container does not declare`);
      }
      // ConfigMap and Secret references, with their keys.
      for (const from of (c.envFrom as Record<string, { name: string; optional?: boolean }>[]) ?? []) {
        if (from.configMapRef && !from.configMapRef.optional && !find('ConfigMap', from.configMapRef.name)) err(r, `container ${c.name}: envFrom ConfigMap ${from.configMapRef.name} is not defined`);
        if (from.secretRef && !from.secretRef.optional && !find('Secret', from.secretRef.name)) err(r, `container ${c.name}: envFrom Secret ${from.secretRef.name} is not defined`);
      }
      for (const e of (c.env as { name: string; valueFrom?: Record<string, { name: string; key: string; optional?: boolean }> }[]) ?? []) {
        for (const [refKind, kind] of [['configMapKeyRef', 'ConfigMap'], ['secretKeyRef', 'Secret']] as const) {
          const ref = e.valueFrom?.[refKind];
          if (!ref || ref.optional) continue;
          const target = find(kind, ref.name);
          if (!target) err(r, `container ${c.name}: env ${e.name} refers to ${kind} ${ref.name}, which is not defined`);
          else if (!hasKey(target, ref.key)) err(r, `container ${c.name}: env ${e.name} refers to key ${ref.key}, which ${kind} ${ref.name} does not have`);
        }
      }
    }
  }

  for (const svc of byKind('Service')) {
    const spec = svc.spec as { selector?: Record<string, string>; ports?: { targetPort?: string | number; port: number }[] };
    const selected = pods.filter((p) => selects(spec.selector, p.labels));
    if (!selected.length) { err(svc, 'selects no pod template'); continue; }
    for (const port of spec.ports ?? []) {
      const target = port.targetPort ?? port.port;
      const ok = selected.every((p) => containersOf(p).some((c) => ((c.ports as { name?: string; containerPort: number }[]) ?? [])
        .some((cp) => (typeof target === 'string' ? cp.name === target : cp.containerPort === target))));
      if (!ok) err(svc, `targetPort ${target} is not a port of the selected pods`);
    }
  }
  for (const kind of ['PodDisruptionBudget', 'NetworkPolicy']) {
    for (const r of byKind(kind)) {
      const sel = matchLabelsOf(kind === 'NetworkPolicy' ? (r.spec as Record<string, unknown>).podSelector : (r.spec as Record<string, unknown>).selector);
      if (sel && !pods.some((p) => selects(sel, p.labels))) err(r, 'selects no pod template');
    }
  }
  for (const hpa of byKind('HorizontalPodAutoscaler')) {
    const spec = hpa.spec as { scaleTargetRef: { kind: string; name: string }; minReplicas?: number; maxReplicas: number; metrics?: { resource?: { name: string } }[] };
    const target = find(spec.scaleTargetRef.kind, spec.scaleTargetRef.name);
    if (!target) { err(hpa, `scaleTargetRef ${spec.scaleTargetRef.kind}/${spec.scaleTargetRef.name} is not defined`); continue; }
    if ((spec.minReplicas ?? 1) > spec.maxReplicas) err(hpa, 'minReplicas is above maxReplicas');
    if ((target.spec as Record<string, unknown>).replicas !== undefined) err(hpa, `its target ${target.metadata.name} sets spec.replicas, which every apply would reset`);
    for (const name of (spec.metrics ?? []).map((m) => m.resource?.name).filter(Boolean)) {
      const pod = podTemplates([target])[0];
      if (pod && containersOf(pod).some((c) => !((c.resources as { requests?: Record<string, unknown> })?.requests?.[name!]))) {
        err(hpa, `scales on ${name}, but not every container of ${target.metadata.name} requests ${name}`);
      }
    }
  }
  return errors;
}

function hasKey(r: K8sObject, key: string): boolean {
  return [r.data, r.stringData, r.binaryData].some((d) => isObject(d) && key in d);
}
