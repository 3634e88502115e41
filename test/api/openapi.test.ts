/**
 * The OpenAPI document the built coordinator serves (/docs-json, UI at /docs) against CONTRACT
 * section 2: every path and method, their parameters, bodies and problem+json answers. Its
 * schemas are checked by behaviour: bodies the API accepts validate against the document, bodies
 * it refuses with 400 do not, and real answers validate against the response schemas.
 */
import Ajv, { ValidateFunction } from 'ajv';
import { randomUUID } from 'node:crypto';
import { componentSchemas } from '../../apps/coordinator/api/openapi';
import { api, startCoordinator, TestCoordinator } from '../support/coordinator';
import { dropCreatedDatabases } from '../support/postgres';

jest.setTimeout(90_000);

const RUN = `txapi_${randomUUID().slice(0, 8)}`;
let coordinator: TestCoordinator;
let doc: any;
let ajv: Ajv;

beforeAll(async () => {
  coordinator = await startCoordinator({ transport: 'http', database: `${RUN}_openapi` });
  const r = await api(coordinator.url, 'GET', '/docs-json');
  expect(r.status).toBe(200);
  doc = r.body;
  ajv = new Ajv({ strict: false, allErrors: true });
  ajv.addFormat('uuid', /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i);
  ajv.addFormat('date-time', (s: string) => !Number.isNaN(Date.parse(s)) && /T/.test(s));
  ajv.addFormat('uri', (s: string) => URL.canParse(s));
  ajv.addSchema({ $id: 'doc', components: doc.components });
}, 60_000);

afterAll(async () => {
  await coordinator?.stop();
  await dropCreatedDatabases();
});

/** A validator for `#/components/schemas/<name>`, OpenAPI's `nullable` understood. */
function schemaOf(name: string): ValidateFunction {
  return ajv.getSchema(`doc#/components/schemas/${name}`) ?? ajv.compile({ $ref: `doc#/components/schemas/${name}` });
}

/** The component a response's or request's JSON schema names. */
function componentName(content: any, type = 'application/json'): string {
  const ref: string = content?.[type]?.schema?.$ref ?? '';
  expect(ref).toMatch(/^#\/components\/schemas\//);
  return ref.split('/').pop()!;
}

const CONTRACT: [string, string][] = [
  ['post', '/v1/transactions'],
  ['get', '/v1/transactions'],
  ['post', '/v1/transactions/{id}/participants'],
  ['post', '/v1/transactions/{id}/commit'],
  ['post', '/v1/transactions/{id}/abort'],
  ['get', '/v1/transactions/{id}'],
  ['get', '/health/live'],
  ['get', '/health/ready'],
  ['get', '/metrics'],
  ['post', '/v1/messages'], // section 3b
];

describe('the OpenAPI document', () => {
  it('is OpenAPI 3 with every path and method of CONTRACT section 2, and the UI is served', async () => {
    expect(doc.openapi).toMatch(/^3\./);
    for (const [method, path] of CONTRACT) expect({ path, method, op: !!doc.paths[path]?.[method] }).toEqual({ path, method, op: true });
    const ui = await fetch(`${coordinator.url}/docs`);
    expect(ui.status).toBe(200);
    expect(await ui.text()).toMatch(/swagger-ui/);
  });

  it('declares the bearer API key on every /v1 operation, and not on health or metrics', () => {
    expect(doc.components.securitySchemes['api-key']).toMatchObject({ type: 'http', scheme: 'bearer' });
    for (const [path, ops] of Object.entries<any>(doc.paths)) {
      for (const [method, op] of Object.entries<any>(ops)) {
        const secured = (op.security ?? []).some((s: object) => 'api-key' in s);
        expect({ path, method, secured }).toEqual({ path, method, secured: path.startsWith('/v1/') });
      }
    }
  });

  it('has the parameters: Idempotency-Key, the id, the list filters and waitMs', () => {
    const params = (method: string, path: string) => Object.fromEntries((doc.paths[path][method].parameters ?? []).map((p: any) => [`${p.in}:${p.name}`, p]));
    expect(params('post', '/v1/transactions')['header:Idempotency-Key']).toMatchObject({ required: false, schema: { type: 'string', maxLength: 200 } });
    for (const path of ['/v1/transactions/{id}', '/v1/transactions/{id}/commit', '/v1/transactions/{id}/abort', '/v1/transactions/{id}/participants']) {
      expect(params(path.endsWith('}') ? 'get' : 'post', path)['path:id']).toMatchObject({ required: true, schema: { type: 'string', format: 'uuid' } });
    }
    const list = params('get', '/v1/transactions');
    expect(Object.keys(list).sort()).toEqual(['query:cursor', 'query:limit', 'query:participant', 'query:state']);
    expect(list['query:state'].schema.enum).toEqual(['active', 'preparing', 'precommitted', 'committing', 'aborting', 'committed', 'aborted']);
    expect(list['query:limit'].schema).toMatchObject({ type: 'integer', minimum: 1, maximum: 200, default: 50 });
    expect(params('post', '/v1/transactions/{id}/commit')['query:waitMs'].schema).toMatchObject({ type: 'integer', minimum: 0 });
  });

  it('answers with problem+json for every error the contract lists, per operation', () => {
    const statuses = (method: string, path: string) => Object.keys(doc.paths[path][method].responses);
    const problems = (method: string, path: string) =>
      Object.entries<any>(doc.paths[path][method].responses).filter(([s]) => s >= '400').map(([s, r]) => [s, componentName(r.content, 'application/problem+json')]);
    for (const [method, path] of CONTRACT.filter(([, p]) => p.startsWith('/v1/transactions'))) {
      expect(statuses(method, path)).toEqual(expect.arrayContaining(['400', '401', '429', '503']));
      for (const [, name] of problems(method, path)) expect(name).toBe('Problem');
    }
    expect(statuses('post', '/v1/transactions')).toEqual(expect.arrayContaining(['200', '201', '413', '415', '422']));
    expect(doc.paths['/v1/transactions'].post.responses['201'].headers.Location).toBeDefined();
    expect(statuses('post', '/v1/transactions/{id}/participants')).toEqual(expect.arrayContaining(['200', '201', '404', '409', '413', '415']));
    expect(statuses('post', '/v1/transactions/{id}/commit')).toEqual(expect.arrayContaining(['200', '202', '404']));
    expect(statuses('post', '/v1/transactions/{id}/abort')).toEqual(expect.arrayContaining(['200', '404', '409']));
    expect(statuses('get', '/v1/transactions/{id}')).toEqual(expect.arrayContaining(['200', '404']));
    expect(statuses('get', '/health/ready').sort()).toEqual(['200', '503']);
    expect(doc.paths['/v1/transactions'].post.responses['429'].headers['Retry-After']).toBeDefined();
    expect(doc.components.schemas.Problem).toMatchObject({ required: expect.arrayContaining(['type', 'title', 'status', 'detail']) });
  });

  it('has exactly the schemas generated from the zod schemas the API validates with', () => {
    expect(doc.components.schemas).toMatchObject(JSON.parse(JSON.stringify(componentSchemas())));
    expect(componentName(doc.paths['/v1/transactions'].post.requestBody.content)).toBe('NewTransaction');
    expect(componentName(doc.paths['/v1/transactions/{id}/participants'].post.requestBody.content)).toBe('Enlistment');
  });

  it('accepts the bodies the API accepts and refuses those it refuses', async () => {
    const begin = schemaOf('NewTransaction');
    const accepted = [
      {},
      { protocol: '3pc', timeoutMs: 100, metadata: { order: 'o-1' } },
      { participants: [{ name: 'inventory', payload: { sku: 'A1', qty: 2 } }, { name: 'pay.ments_2', url: 'http://127.0.0.1:1' }] },
    ];
    const refused = [
      { protocol: '4pc' },
      { timeoutMs: 99 },
      { timeoutMs: 3_600_001 },
      { timeoutMs: 1.5 },
      { participants: [{ name: 'has space' }] },
      { participants: [{ name: 'x', extra: 1 }] },
      { participants: [{ name: 'x', url: 'ftp://x' }] },
      { unknown: true },
      { metadata: [] },
    ];
    for (const body of accepted) {
      expect({ body, valid: begin(body) }).toEqual({ body, valid: true });
      expect((await api(coordinator.url, 'POST', '/v1/transactions', body)).status).toBe(201);
    }
    for (const body of refused) {
      expect({ body, valid: begin(body) }).toEqual({ body, valid: false });
      const r = await api(coordinator.url, 'POST', '/v1/transactions', body);
      expect({ body, status: r.status }).toEqual({ body, status: 400 });
    }
  });

  it('describes the answers the API really gives', async () => {
    const ok = (name: string, body: unknown) => {
      const v = schemaOf(name);
      expect({ name, valid: v(body), errors: v.errors ?? null }).toEqual({ name, valid: true, errors: null });
    };
    const begun = await api(coordinator.url, 'POST', '/v1/transactions', { participants: [{ name: 'inventory', url: 'http://127.0.0.1:1', payload: { sku: 'A' } }], metadata: { a: 1 } });
    ok(componentName(doc.paths['/v1/transactions'].post.responses['201'].content), begun.body);
    const id = begun.body.id;
    ok('Transaction', (await api(coordinator.url, 'GET', `/v1/transactions/${id}`)).body);
    ok('Transaction', (await api(coordinator.url, 'POST', `/v1/transactions/${id}/participants`, { name: 'payments', url: 'http://127.0.0.1:1' })).body);
    ok('Transaction', (await api(coordinator.url, 'POST', `/v1/transactions/${id}/abort`)).body);
    const empty = (await api(coordinator.url, 'POST', '/v1/transactions', { protocol: '3pc' })).body;
    const committed = await api(coordinator.url, 'POST', `/v1/transactions/${empty.id}/commit`);
    expect(committed.status).toBe(200);
    ok('Transaction', committed.body);
    ok(componentName(doc.paths['/v1/transactions'].get.responses['200'].content), (await api(coordinator.url, 'GET', '/v1/transactions?limit=2')).body);
    ok('Liveness', (await api(coordinator.url, 'GET', '/health/live')).body);
    ok('Readiness', (await api(coordinator.url, 'GET', '/health/ready')).body);

    const problems = [
      await api(coordinator.url, 'GET', `/v1/transactions/${randomUUID()}`),
      await api(coordinator.url, 'GET', '/v1/transactions/not-a-uuid'),
      await api(coordinator.url, 'POST', '/v1/transactions', { timeoutMs: 5 }),
      await api(coordinator.url, 'POST', '/v1/transactions', 'not json', { 'content-type': 'text/plain' }),
      await api(coordinator.url, 'POST', `/v1/transactions/${id}/participants`, { name: 'late', url: 'http://127.0.0.1:1' }),
    ];
    expect(problems.map((p) => p.status)).toEqual([404, 400, 400, 415, 409]);
    for (const p of problems) {
      expect(p.headers.get('content-type')).toMatch(/^application\/problem\+json/);
      ok('Problem', p.body);
    }
    expect(problems[2].body.errors).toEqual([{ field: 'body.timeoutMs', message: expect.any(String) }]);
  });
});
