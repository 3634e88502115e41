/**
 * docker/ and k8s/ as CI validates them (tools/validate-infra): everything in the repository
 * passes, and each kind of mistake the validation exists for is caught — shown by breaking a copy
 * of the files one way at a time. Also: the variables in the manifests and the compose file are the
 * ones the apps read, with values the apps accept.
 */
import { cpSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { composeErrors, interpolate } from '../../tools/validate-infra/compose';
import { dockerfileErrors } from '../../tools/validate-infra/dockerfile';
import { coordinatorConfigError, coordinatorVariables, participantVariables } from '../../tools/validate-infra/env';
import { jsonPatch, parseImage, render } from '../../tools/validate-infra/kustomize';
import { checkKustomization, compareRenders, REPO_ROOT, validateInfra } from '../../tools/validate-infra/validate';
import { readYamlDocuments } from '../../tools/validate-infra/yaml-docs';

jest.setTimeout(180_000);

describe('the repository\'s docker/ and k8s/', () => {
  it('pass every check', () => {
    const checks = validateInfra({ kubectl: 'auto' });
    const failed = checks.filter((c) => c.errors.length).map((c) => `${c.name}:\n  ${c.errors.join('\n  ')}`);
    expect(failed).toEqual([]);
    expect(checks.map((c) => c.name)).toEqual(expect.arrayContaining([
      'docker/Dockerfile', 'docker/compose.yaml', 'k8s/base', 'k8s/overlays/dev', 'k8s/overlays/production',
      'k8s/overlays/production/topics', 'k8s/topics',
    ]));
  });

  it('give the coordinator only variables its configuration reads, with values it accepts', () => {
    const known = coordinatorVariables();
    for (const name of ['PORT', 'DATABASE_URL', 'KAFKA_BROKERS', 'TX_TOPIC_PREFIX', 'TX_DEFAULT_TIMEOUT_MS', 'COORDINATOR_API_KEYS', 'TX_MESSAGE_SECRET', 'COORDINATOR_URL']) {
      expect(known).toContain(name); // CONTRACT section 1
    }
    const [configMap] = readYamlDocuments(join(REPO_ROOT, 'k8s/base/configmap.yaml')) as { data: Record<string, string> }[];
    expect(Object.keys(configMap.data).filter((k) => !known.has(k))).toEqual([]);
    const secrets = readYamlDocuments(join(REPO_ROOT, 'k8s/overlays/dev/secrets.yaml')) as { metadata: { name: string }; stringData: Record<string, string> }[];
    const coordinatorSecret = secrets.find((s) => s.metadata.name === 'txcoord-coordinator')!.stringData;
    expect(Object.keys(coordinatorSecret).sort()).toEqual(['COORDINATOR_API_KEYS', 'DATABASE_URL', 'TX_MESSAGE_SECRET']);
    expect(coordinatorConfigError({ ...configMap.data, ...coordinatorSecret })).toBeNull();

    const template = readYamlDocuments(join(REPO_ROOT, 'k8s/overlays/production/secrets.template.yaml')) as typeof secrets;
    const placeholders = template.find((s) => s.metadata.name === 'txcoord-coordinator')!.stringData;
    expect(Object.keys(placeholders).sort()).toEqual(Object.keys(coordinatorSecret).sort());
    // Forgotten placeholders stop the coordinator instead of running it with a known value.
    expect(coordinatorConfigError({ ...configMap.data, ...placeholders })).toMatch(/^configuration error: DATABASE_URL /);
    expect([...participantVariables()]).toEqual(expect.arrayContaining(['DATABASE_URL', 'KAFKA_BROKERS', 'TX_TOPIC_PREFIX', 'TX_MESSAGE_SECRET', 'LOG_LEVEL']));
  });
});

/** A scratch copy of the files the validation reads; apps/ and friends linked, not copied. */
function scratch(): string {
  const dir = mkdtempSync(join(tmpdir(), 'validate-infra-'));
  for (const d of ['k8s', 'docker']) cpSync(join(REPO_ROOT, d), join(dir, d), { recursive: true });
  for (const f of ['.dockerignore', 'package.json', 'package-lock.json', 'tsconfig.json', 'tsconfig.build.json']) cpSync(join(REPO_ROOT, f), join(dir, f));
  for (const d of ['apps', 'libs', 'tools']) symlinkSync(join(REPO_ROOT, d), join(dir, d));
  return dir;
}

function edit(root: string, file: string, from: string | RegExp, to: string): void {
  const path = join(root, file);
  const text = readFileSync(path, 'utf8');
  const next = text.replace(from, to);
  if (next === text) throw new Error(`${file}: ${String(from)} not found`);
  writeFileSync(path, next);
}

describe('the validation catches', () => {
  let root: string;
  beforeEach(() => { root = scratch(); });
  afterEach(() => rmSync(root, { recursive: true, force: true }));

  const base = () => checkKustomization(root, 'k8s/base', { kubectl: false }).errors;

  it('a misspelt field, which the API server would silently drop', () => {
    edit(root, 'k8s/base/coordinator-deployment.yaml', 'readinessProbe:', 'readinesProbe:');
    expect(base()).toEqual([expect.stringMatching(/coordinator-deployment\.yaml: apps\/v1 Deployment ~\/txcoord-coordinator: \/spec\/template\/spec\/containers\/0\/readinesProbe: unknown field: .*Did you mean to write 'readinessProbe'/)]);
  });

  it('a value of the wrong type, and a missing required field', () => {
    edit(root, 'k8s/base/coordinator-hpa.yaml', 'maxReplicas: 6', 'maxReplicas: "six"');
    edit(root, 'k8s/base/coordinator-service.yaml', '    - name: http\n      port: 80', '    - name: http');
    const errors = base().join('\n');
    expect(errors).toMatch(/HorizontalPodAutoscaler ~\/txcoord-coordinator: \/spec\/maxReplicas must be integer/);
    expect(errors).toMatch(/Service ~\/txcoord-coordinator: \/spec\/ports\/0 must have required property port/);
  });

  it('broken references: a Service port, a probe port, a ConfigMap key, an HPA target', () => {
    edit(root, 'k8s/base/coordinator-service.yaml', 'targetPort: http', 'targetPort: web');
    edit(root, 'k8s/base/coordinator-deployment.yaml', /path: \/health\/ready\n( +)port: http/, 'path: /health/ready\n$1port: metrics');
    edit(root, 'k8s/base/participant-deployment.yaml', 'key: TX_TOPIC_PREFIX', 'key: TX_PREFIX');
    edit(root, 'k8s/base/coordinator-hpa.yaml', 'name: txcoord-coordinator\n  minReplicas', 'name: coordinator\n  minReplicas');
    const errors = base().join('\n');
    expect(errors).toContain('Service ~/txcoord-coordinator: targetPort web is not a port of the selected pods');
    expect(errors).toContain('container coordinator: readinessProbe uses port "metrics", which the container does not declare');
    expect(errors).toContain('env TX_TOPIC_PREFIX refers to key TX_PREFIX, which ConfigMap txcoord-coordinator does not have');
    expect(errors).toContain('scaleTargetRef Deployment/coordinator is not defined');
  });

  it('a variable the coordinator does not read, and a value it would refuse', () => {
    edit(root, 'k8s/base/configmap.yaml', 'KAFKA_BROKERS:', 'KAFKA_BROKER:');
    edit(root, 'k8s/base/configmap.yaml', 'TX_DEFAULT_TIMEOUT_MS: "30000"', 'TX_DEFAULT_TIMEOUT_MS: "10"');
    const errors = base().join('\n');
    expect(errors).toContain('container coordinator: sets KAFKA_BROKER (from ConfigMap txcoord-coordinator), which the coordinator does not read');
    expect(errors).toContain('the coordinator would not start: configuration error: TX_DEFAULT_TIMEOUT_MS must be an integer between 100 and 3600000 (got "10")');
  });

  it('a pod that could run the embedded database, or as root with a writable filesystem', () => {
    edit(root, 'k8s/base/coordinator-deployment.yaml', / +- name: DATABASE_URL\n +valueFrom:\n +secretKeyRef:\n +name: txcoord-coordinator\n +key: DATABASE_URL\n/, '');
    edit(root, 'k8s/base/migrate-job.yaml', 'readOnlyRootFilesystem: true', 'readOnlyRootFilesystem: false');
    edit(root, 'k8s/base/participant-deployment.yaml', 'runAsNonRoot: true', 'runAsNonRoot: false');
    const errors = base().join('\n');
    expect(errors).toContain('container coordinator: DATABASE_URL must come from a required Secret key (the embedded default must never run in a pod)');
    expect(errors).toContain('Job ~/txcoord-migrate: container migrate: securityContext.readOnlyRootFilesystem must be true');
    expect(errors).toContain('Deployment ~/txcoord-participant-inventory: pod securityContext.runAsNonRoot must be true');
  });

  it('KafkaTopic mistakes: an unknown field, a missing topic, too few partitions for the replicas', () => {
    edit(root, 'k8s/topics/kafkatopics.yaml', 'partitions: 3', 'partition: 3');
    edit(root, 'k8s/topics/kafkatopics.yaml', /---\napiVersion: kafka.strimzi.io\/v1beta2\nkind: KafkaTopic\nmetadata:\n  name: tx-participant-inventory[\s\S]*?(?=---)/, '');
    edit(root, 'k8s/overlays/production/kustomization.yaml', 'value: 10', 'value: 20');
    const topics = checkKustomization(root, 'k8s/topics', { kubectl: false }).errors.join('\n');
    expect(topics).toContain('KafkaTopic ~/tx-dead-letter: /spec must NOT have additional properties (partition)');
    const production = checkKustomization(root, 'k8s/overlays/production', { kubectl: false }).errors.join('\n');
    expect(production).toContain('no KafkaTopic for topic tx.participant.inventory');
    expect(production).toContain('maxReplicas 20 exceeds the 12 partitions of tx.coordinator');
  });

  it('kustomization mistakes: an unsupported field, a patch that does not apply', () => {
    edit(root, 'k8s/overlays/dev/kustomization.yaml', 'namespace: txcoord-dev', 'namespace: txcoord-dev\nnamePrefix: dev-');
    expect(() => render(join(root, 'k8s/overlays/dev'), root)).toThrow(/field "namePrefix" is not in the subset the CI renderer supports/);
    edit(root, 'k8s/overlays/dev/kustomization.yaml', 'namePrefix: dev-\n', '');
    edit(root, 'k8s/overlays/dev/kustomization.yaml', 'path: /spec/minReplicas', 'path: /spec/minimumReplicas/x');
    expect(() => render(join(root, 'k8s/overlays/dev'), root)).toThrow(/patches\[1\]: on autoscaling\/v2 HorizontalPodAutoscaler ~\/txcoord-coordinator: path \/spec\/minimumReplicas\/x does not exist/);
  });

  it('compose mistakes: an unknown key, a missing dependency, an unhealthy wait, a variable typo', () => {
    const file = join(root, 'docker/compose.yaml');
    edit(root, 'docker/compose.yaml', 'stop_grace_period: 30s', 'stop_grace_period: 30s\n    restart_policy: always');
    expect(composeErrors(file)).toEqual([expect.stringContaining('schema: /services/coordinator must NOT have additional properties (restart_policy)')]);
    edit(root, 'docker/compose.yaml', '    restart_policy: always\n', '');
    edit(root, 'docker/compose.yaml', /depends_on:\n      kafka:\n        condition: service_healthy/, 'depends_on:\n      kafka:\n        condition: service_healthy\n      zookeeper:\n        condition: service_started');
    edit(root, 'docker/compose.yaml', /    healthcheck:\n      test: \["CMD-SHELL", "pg_isready[^\n]*\n( {6}[^\n]*\n)*/, '');
    edit(root, 'docker/compose.yaml', 'KAFKA_BROKERS: kafka:9092\n      TX_TOPIC_PREFIX: tx.\n      COORDINATOR_URL', 'KAFKA_BROKERS: kafka:9092\n      TX_TOPIC_PREFX: tx.\n      COORDINATOR_URL');
    const errors = composeErrors(file).join('\n');
    expect(errors).toContain('service kafka-init: depends_on zookeeper, which is not a service');
    expect(errors).toContain('service coordinator: waits for postgres to be healthy, but postgres has no health check');
    expect(errors).toContain('service coordinator: sets TX_TOPIC_PREFX, which the coordinator does not read');
  });

  it('Dockerfile mistakes: running as root, a missing file, a command with no source', () => {
    edit(root, 'docker/Dockerfile', 'USER 1000:1000', 'USER root');
    edit(root, 'docker/Dockerfile', 'COPY docker/healthcheck.js', 'COPY docker/health.js');
    edit(root, 'docker/Dockerfile', 'CMD ["node", "dist/apps/coordinator/main.js"]', 'CMD ["node", "dist/apps/coordinator/server.js"]');
    const errors = dockerfileErrors(join(root, 'docker/Dockerfile'), root).join('\n');
    expect(errors).toContain('USER root: use a numeric non-root uid');
    expect(errors).toContain('COPY docker/health.js: not in the build context');
    expect(errors).toContain('dist/apps/coordinator/server.js has no source apps/coordinator/server.ts');
  });
});

describe('the renderer\'s pieces', () => {
  it('applies RFC 6902 patches', () => {
    const doc = { a: { b: [1, 2, 3] }, c: 'x' };
    expect(jsonPatch(doc, [
      { op: 'add', path: '/a/b/-', value: 4 }, { op: 'remove', path: '/a/b/0' }, { op: 'replace', path: '/c', value: { d: 1 } },
      { op: 'copy', from: '/c', path: '/e' }, { op: 'move', from: '/e/d', path: '/f' }, { op: 'test', path: '/f', value: 1 },
      { op: 'add', path: '/g~1h', value: true },
    ])).toEqual({ a: { b: [2, 3, 4] }, c: { d: 1 }, e: {}, f: 1, 'g/h': true });
    expect(doc).toEqual({ a: { b: [1, 2, 3] }, c: 'x' });
    expect(() => jsonPatch(doc, [{ op: 'test', path: '/c', value: 'y' }])).toThrow(/test failed/);
  });

  it('parses image references as kustomize does', () => {
    expect(parseImage('txcoord')).toEqual({ name: 'txcoord' });
    expect(parseImage('registry:5000/team/txcoord:1.2')).toEqual({ name: 'registry:5000/team/txcoord', tag: '1.2' });
    expect(parseImage('ghcr.io/x/txcoord:1@sha256:ab')).toEqual({ name: 'ghcr.io/x/txcoord', tag: '1', digest: 'sha256:ab' });
  });

  it('compares its renders with kubectl kustomize\'s, field by field', () => {
    const r = (replicas: number) => ({ apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'd', namespace: 'n' }, spec: { replicas, selector: {} } });
    const extra = { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'c' } };
    expect(compareRenders([r(1)], [r(1)], 'k')).toEqual([]);
    expect(compareRenders([r(1), extra], [r(2)], 'k')).toEqual([
      'k: v1 ConfigMap ~/c rendered here but not by kubectl kustomize',
      'k: apps/v1 Deployment n/d differs from kubectl kustomize\'s rendering: /spec/replicas: 1 here, 2 in kubectl\'s',
    ]);
  });

  it('interpolates compose variables as Compose does', () => {
    const env = { SET: 'v', EMPTY: '' };
    expect(interpolate('${SET:-d} ${EMPTY:-d} ${EMPTY-d} ${UNSET-d} ${UNSET} $$x $SET', env, 'f')).toBe('v d  d  $x v');
    expect(() => interpolate('${UNSET:?needed}', env, 'f')).toThrow(/UNSET is required: needed/);
  });
});
