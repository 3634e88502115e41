/**
 * A small kustomize renderer for exactly the subset k8s/ uses, so that CI can validate what the
 * overlays really produce without the kustomize binary (neither Debian nor npm ships a current
 * one). Supported kustomization fields: resources (files and directories), namespace, labels
 * (metadata only: includeSelectors/includeTemplates false), images, and patches written as JSON
 * patches (RFC 6902) with a target of group/version/kind/name/namespace. Anything else is refused
 * with an error naming the field, never silently ignored. When kubectl is on the PATH,
 * `renderWithKubectl` gives the real kustomize's output for comparison (see validate.ts).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { InfraError, isObject, readYamlDocuments, readYamlObject } from './yaml-docs';

export type K8sObject = Record<string, unknown> & {
  apiVersion: string;
  kind: string;
  metadata: Record<string, unknown> & { name: string; namespace?: string; labels?: Record<string, string> };
};

export interface Rendered {
  /** The file each resource came from (relative to the repository when possible). */
  source: string;
  resource: K8sObject;
}

const SUPPORTED = new Set(['apiVersion', 'kind', 'namespace', 'resources', 'labels', 'images', 'patches']);
const FILENAMES = ['kustomization.yaml', 'kustomization.yml', 'Kustomization'];
/** Kinds kustomize leaves without a namespace. */
const CLUSTER_SCOPED = new Set([
  'Namespace', 'ClusterRole', 'ClusterRoleBinding', 'CustomResourceDefinition', 'PersistentVolume',
  'StorageClass', 'PriorityClass', 'ValidatingWebhookConfiguration', 'MutatingWebhookConfiguration',
  'APIService', 'IngressClass', 'RuntimeClass', 'ClusterIssuer',
]);
/** Kinds whose namespace kustomize also rewrites inside (subjects, webhooks): not in this subset. */
const NAMESPACE_REFERENCING = new Set(['RoleBinding', 'ClusterRoleBinding', 'ValidatingWebhookConfiguration', 'MutatingWebhookConfiguration', 'APIService']);

export function kustomizationFile(dir: string): string | null {
  for (const name of FILENAMES) {
    const f = join(dir, name);
    if (existsSync(f)) return f;
  }
  return null;
}

/** Renders the kustomization in `dir` (recursively through directory resources). */
export function render(dir: string, root = process.cwd()): Rendered[] {
  const file = kustomizationFile(dir);
  if (!file) throw new InfraError(rel(dir, root), 'no kustomization.yaml');
  const k = readYamlObject(file);
  const where = rel(file, root);
  for (const key of Object.keys(k)) {
    if (!SUPPORTED.has(key)) throw new InfraError(where, `field "${key}" is not in the subset the CI renderer supports (${[...SUPPORTED].join(', ')})`);
  }
  if (k.apiVersion !== 'kustomize.config.k8s.io/v1beta1' || k.kind !== 'Kustomization') {
    throw new InfraError(where, 'must have apiVersion kustomize.config.k8s.io/v1beta1 and kind Kustomization');
  }

  let out: Rendered[] = [];
  for (const entry of list(k.resources, where, 'resources')) {
    if (typeof entry !== 'string') throw new InfraError(where, 'resources entries must be paths');
    const path = resolve(dir, entry);
    if (!existsSync(path)) throw new InfraError(where, `resource ${entry} does not exist`);
    if (statSync(path).isDirectory()) {
      out.push(...render(path, root));
    } else {
      for (const doc of readYamlDocuments(path)) out.push({ source: rel(path, root), resource: asObject(doc, rel(path, root)) });
    }
  }
  const ids = new Set<string>();
  for (const r of out) {
    const id = resourceId(r.resource);
    if (ids.has(id)) throw new InfraError(where, `${id} is defined twice`);
    ids.add(id);
  }

  for (const [i, p] of list(k.patches, where, 'patches').entries()) out = applyPatch(out, p, dir, `${where} patches[${i}]`);
  if (k.namespace !== undefined) {
    if (typeof k.namespace !== 'string') throw new InfraError(where, 'namespace must be a string');
    for (const r of out) {
      if (NAMESPACE_REFERENCING.has(r.resource.kind)) throw new InfraError(where, `namespace on ${r.resource.kind} is not in the CI renderer's subset`);
      if (!CLUSTER_SCOPED.has(r.resource.kind)) r.resource.metadata.namespace = k.namespace;
    }
  }
  for (const [i, l] of list(k.labels, where, 'labels').entries()) {
    if (!isObject(l) || !isObject(l.pairs)) throw new InfraError(where, `labels[${i}] needs pairs`);
    for (const key of Object.keys(l)) {
      if (key === 'pairs') continue;
      if ((key === 'includeSelectors' || key === 'includeTemplates') && l[key] === false) continue;
      throw new InfraError(where, `labels[${i}].${key} is not in the CI renderer's subset (metadata labels only)`);
    }
    for (const r of out) r.resource.metadata.labels = { ...(r.resource.metadata.labels ?? {}), ...(l.pairs as Record<string, string>) };
  }
  for (const [i, img] of list(k.images, where, 'images').entries()) {
    if (!isObject(img) || typeof img.name !== 'string') throw new InfraError(where, `images[${i}] needs a name`);
    for (const key of Object.keys(img)) {
      if (!['name', 'newName', 'newTag', 'digest'].includes(key)) throw new InfraError(where, `images[${i}].${key} is not supported`);
    }
    for (const r of out) setImages(r.resource, img as unknown as ImageRule);
  }
  return out;
}

/** `apiVersion kind namespace/name`: what kustomize considers one resource. */
export function resourceId(r: K8sObject): string {
  return `${r.apiVersion} ${r.kind} ${r.metadata.namespace ?? '~'}/${r.metadata.name}`;
}

function rel(path: string, root: string): string {
  const r = relative(root, path);
  return r.startsWith('..') ? path : r;
}

function list(v: unknown, where: string, field: string): unknown[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw new InfraError(where, `${field} must be a list`);
  return v;
}

function asObject(doc: unknown, where: string): K8sObject {
  if (!isObject(doc) || typeof doc.apiVersion !== 'string' || typeof doc.kind !== 'string'
    || !isObject(doc.metadata) || typeof doc.metadata.name !== 'string') {
    throw new InfraError(where, 'every document needs apiVersion, kind and metadata.name');
  }
  return doc as K8sObject;
}

// --- patches ---------------------------------------------------------------------------------

interface Target { group?: string; version?: string; kind?: string; name?: string; namespace?: string }

function matches(r: K8sObject, t: Target): boolean {
  const [group, version] = r.apiVersion.includes('/') ? r.apiVersion.split('/') : ['', r.apiVersion];
  return (t.group === undefined || t.group === group)
    && (t.version === undefined || t.version === version)
    && (t.kind === undefined || t.kind === r.kind)
    && (t.name === undefined || t.name === r.metadata.name)
    && (t.namespace === undefined || t.namespace === (r.metadata.namespace ?? ''));
}

function applyPatch(resources: Rendered[], p: unknown, dir: string, where: string): Rendered[] {
  if (!isObject(p)) throw new InfraError(where, 'must be a mapping');
  for (const key of Object.keys(p)) {
    if (!['target', 'patch', 'path'].includes(key)) throw new InfraError(where, `field "${key}" is not supported`);
  }
  if (!isObject(p.target)) throw new InfraError(where, 'needs a target (strategic-merge patches are not in the CI renderer\'s subset)');
  for (const key of Object.keys(p.target)) {
    if (!['group', 'version', 'kind', 'name', 'namespace'].includes(key)) throw new InfraError(where, `target.${key} is not supported`);
  }
  const text = typeof p.patch === 'string' ? p.patch : typeof p.path === 'string' ? readYamlSource(resolve(dir, p.path), where) : null;
  if (text === null) throw new InfraError(where, 'needs patch (inline) or path');
  const docs = parseAllDocuments(text);
  const parsed = (Array.isArray(docs) ? docs : [docs]).map((d) => d.toJS());
  if (parsed.length !== 1 || !Array.isArray(parsed[0])) throw new InfraError(where, 'the patch must be a JSON patch: a list of operations');
  const ops = parsed[0] as unknown[];
  const targets = resources.filter((r) => matches(r.resource, p.target as Target));
  if (targets.length === 0) throw new InfraError(where, `target ${JSON.stringify(p.target)} matches no resource`);
  for (const r of targets) {
    try {
      r.resource = jsonPatch(r.resource, ops) as K8sObject;
    } catch (err) {
      throw new InfraError(where, `on ${resourceId(r.resource)}: ${(err as Error).message}`);
    }
  }
  return resources;
}

function readYamlSource(file: string, where: string): string {
  if (!existsSync(file)) throw new InfraError(where, `patch file ${file} does not exist`);
  return readFileSync(file, 'utf8');
}

function pointer(path: unknown): string[] {
  if (typeof path !== 'string' || (path !== '' && !path.startsWith('/'))) throw new Error(`bad JSON pointer ${JSON.stringify(path)}`);
  return path === '' ? [] : path.slice(1).split('/').map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
}

const clone = <T>(v: T): T => structuredClone(v);

/** RFC 6902 on a copy: add, remove, replace, move, copy, test. */
export function jsonPatch(doc: unknown, ops: unknown[]): unknown {
  let root = clone(doc);
  const parentOf = (parts: string[]) => {
    let node: unknown = root;
    for (const part of parts.slice(0, -1)) {
      if (Array.isArray(node)) node = node[index(node, part, false)];
      else if (isObject(node) && part in node) node = node[part];
      else throw new Error(`path /${parts.join('/')} does not exist`);
    }
    if (!Array.isArray(node) && !isObject(node)) throw new Error(`path /${parts.join('/')} does not exist`);
    return node as Record<string, unknown> | unknown[];
  };
  const index = (arr: unknown[], part: string, forAdd: boolean) => {
    if (forAdd && part === '-') return arr.length;
    if (!/^(0|[1-9]\d*)$/.test(part)) throw new Error(`bad array index ${part}`);
    const i = Number(part);
    if (i > arr.length - (forAdd ? 0 : 1)) throw new Error(`array index ${i} out of range`);
    return i;
  };
  const get = (parts: string[]) => {
    if (parts.length === 0) return root;
    const parent = parentOf(parts);
    const last = parts[parts.length - 1];
    if (Array.isArray(parent)) return parent[index(parent, last, false)];
    if (!(last in parent)) throw new Error(`path /${parts.join('/')} does not exist`);
    return parent[last];
  };
  const remove = (parts: string[]) => {
    const parent = parentOf(parts);
    const last = parts[parts.length - 1];
    if (Array.isArray(parent)) return parent.splice(index(parent, last, false), 1)[0];
    if (!(last in parent)) throw new Error(`path /${parts.join('/')} does not exist`);
    const v = parent[last];
    delete parent[last];
    return v;
  };
  const add = (parts: string[], value: unknown) => {
    if (parts.length === 0) { root = value; return; }
    const parent = parentOf(parts);
    const last = parts[parts.length - 1];
    if (Array.isArray(parent)) parent.splice(index(parent, last, true), 0, value);
    else parent[last] = value;
  };
  for (const raw of ops) {
    if (!isObject(raw)) throw new Error('each operation must be a mapping');
    const path = pointer(raw.path);
    switch (raw.op) {
      case 'add': add(path, clone(raw.value)); break;
      case 'remove': remove(path); break;
      case 'replace': get(path); if (path.length === 0) root = clone(raw.value); else { remove(path); add(path, clone(raw.value)); } break;
      case 'move': { const v = remove(pointer(raw.from)); add(path, v); break; }
      case 'copy': add(path, clone(get(pointer(raw.from)))); break;
      case 'test': if (JSON.stringify(get(path)) !== JSON.stringify(raw.value)) throw new Error(`test failed at ${raw.path}`); break;
      default: throw new Error(`unknown op ${JSON.stringify(raw.op)}`);
    }
  }
  return root;
}

// --- images ----------------------------------------------------------------------------------

interface ImageRule { name: string; newName?: string; newTag?: string; digest?: string }

/** name, tag, digest of an image reference (a registry port is part of the name). */
export function parseImage(ref: string): { name: string; tag?: string; digest?: string } {
  const [beforeDigest, digest] = ref.split('@', 2);
  const slash = beforeDigest.lastIndexOf('/');
  const colon = beforeDigest.lastIndexOf(':');
  if (colon > slash) return { name: beforeDigest.slice(0, colon), tag: beforeDigest.slice(colon + 1), digest };
  return { name: beforeDigest, digest };
}

function setImages(node: unknown, rule: ImageRule): void {
  if (Array.isArray(node)) { node.forEach((n) => setImages(n, rule)); return; }
  if (!isObject(node)) return;
  for (const [key, value] of Object.entries(node)) {
    if ((key === 'containers' || key === 'initContainers' || key === 'ephemeralContainers') && Array.isArray(value)) {
      for (const c of value) {
        if (!isObject(c) || typeof c.image !== 'string') continue;
        const img = parseImage(c.image);
        if (img.name !== rule.name) continue;
        const name = rule.newName ?? img.name;
        c.image = rule.digest ? `${name}@${rule.digest}` : rule.newTag ? `${name}:${rule.newTag}` : `${name}${img.tag ? `:${img.tag}` : ''}${img.digest ? `@${img.digest}` : ''}`;
      }
    }
    setImages(value, rule);
  }
}

// --- the real kustomize, when there is one ---------------------------------------------------

/** `kubectl kustomize <dir>` parsed, or null when kubectl is not installed. */
export function renderWithKubectl(dir: string): K8sObject[] | null {
  let out: string;
  try {
    out = execFileSync('kubectl', ['kustomize', dir], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 60_000 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new InfraError(dir, `kubectl kustomize failed: ${String((err as { stderr?: string }).stderr ?? err).trim()}`);
  }
  return readYamlDocuments(`kubectl kustomize ${dir}`, out) as K8sObject[];
}

/** kubectl's client and kustomize versions, or null without kubectl. */
export function kubectlVersion(): string | null {
  try {
    const v = JSON.parse(execFileSync('kubectl', ['version', '--client', '-o', 'json'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 30_000 }));
    return `kubectl ${v.clientVersion?.gitVersion ?? '?'}, kustomize ${v.kustomizeVersion ?? '?'}`;
  } catch {
    return null;
  }
}
