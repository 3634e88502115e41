import { applyDecorators, INestApplication } from '@nestjs/common';
import {
  ApiBody,
  ApiHeader,
  ApiParam,
  ApiQuery,
  ApiResponse,
  DocumentBuilder,
  OpenAPIObject,
  SchemaObject,
  SwaggerModule,
} from '@nestjs/swagger';
import { z } from 'zod';
import { zodToJsonSchema } from 'zod-to-json-schema';
import { messageSchema } from '../../../libs/protocol';
import { CoordinatorConfig } from '../config/config';
import { beginSchema, idempotencyKeySchema, participantSchema, txIdSchema } from './schemas';
import {
  adminActionResultSchema,
  auditListSchema,
  emptyObjectSchema,
  liveSchema,
  participantViewSchema,
  problemSchema,
  readinessSchema,
  transactionListSchema,
  transactionViewSchema,
} from './views';

/**
 * The OpenAPI document (served at /docs, JSON at /docs-json) is built by @nestjs/swagger from the
 * controllers and the decorators below; every request and response schema in it is generated from
 * the zod schema that validates (schemas.ts) or describes (views.ts) it, so the document cannot
 * drift from what the API checks.
 */

/** Named schemas of the document (components.schemas), each from one zod schema. */
const COMPONENTS = {
  NewTransaction: beginSchema,
  Enlistment: participantSchema,
  Transaction: transactionViewSchema,
  TransactionParticipant: participantViewSchema,
  TransactionPage: transactionListSchema,
  Problem: problemSchema,
  AdminActionResult: adminActionResultSchema,
  AuditPage: auditListSchema,
  Liveness: liveSchema,
  Readiness: readinessSchema,
  Accepted: emptyObjectSchema,
  ProtocolMessage: messageSchema,
} satisfies Record<string, z.ZodTypeAny>;

export type ComponentName = keyof typeof COMPONENTS;

const ref = (name: ComponentName) => ({ $ref: `#/components/schemas/${name}` });

/**
 * JSON Schema (OpenAPI 3.0 dialect) of a zod schema, self-contained. Refinements that JSON Schema
 * cannot express (unique participant names, byte sizes) are in the descriptions.
 */
export function jsonSchema(schema: z.ZodTypeAny): SchemaObject {
  const out = zodToJsonSchema(schema, { target: 'openApi3', $refStrategy: 'none' }) as SchemaObject & { $schema?: string };
  delete out.$schema;
  return nullInEnums(out) as SchemaObject;
}

/** OpenAPI 3.0.3: `nullable` does not widen an `enum`, so a nullable enum lists null itself. */
function nullInEnums(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(nullInEnums);
  if (!node || typeof node !== 'object') return node;
  const o = Object.fromEntries(Object.entries(node).map(([k, v]) => [k, nullInEnums(v)])) as Record<string, unknown>;
  if (o.nullable === true && Array.isArray(o.enum) && !o.enum.includes(null)) o.enum = [...o.enum, null];
  return o;
}

/** A parameter's schema: an optional field's own type (the parameter says `required`). */
const parameterSchema = (field: z.ZodTypeAny) => jsonSchema(field instanceof z.ZodOptional ? field.unwrap() : field);

/**
 * The components' schemas, where a part equal to another component (the participants of
 * NewTransaction, the items of TransactionPage, …) is a reference to it.
 */
export function componentSchemas(): Record<ComponentName, SchemaObject> {
  const inline = Object.fromEntries(Object.entries(COMPONENTS).map(([name, s]) => [name, jsonSchema(s)])) as Record<ComponentName, SchemaObject>;
  const keys = Object.entries(inline).map(([name, s]) => [name, JSON.stringify(s)] as const);
  const withRefs = (node: unknown, self: string, root: boolean): unknown => {
    if (!root && node && typeof node === 'object' && !Array.isArray(node)) {
      const same = keys.find(([name, key]) => name !== self && key === JSON.stringify(node));
      if (same) return ref(same[0] as ComponentName);
    }
    if (Array.isArray(node)) return node.map((n) => withRefs(n, self, false));
    if (node && typeof node === 'object') {
      return Object.fromEntries(Object.entries(node).map(([k, v]) => [k, withRefs(v, self, false)]));
    }
    return node;
  };
  return Object.fromEntries(Object.entries(inline).map(([name, s]) => [name, withRefs(s, name, true)])) as Record<ComponentName, SchemaObject>;
}

const PROBLEMS: Record<number, string> = {
  400: 'Invalid body, path id, query or header; `errors` names each bad field. Nothing was changed.',
  401: 'Missing or wrong API key (only when COORDINATOR_API_KEYS is set).',
  404: 'No such transaction.',
  409: 'Refused in the transaction\'s current state (for example enlisting after commit was requested, aborting a committed one).',
  413: 'The body is larger than TX_BODY_LIMIT_BYTES.',
  415: 'The body is not application/json.',
  422: 'This Idempotency-Key was used with another body.',
  429: 'Too many requests from this client (TX_RATE_LIMIT_PER_MINUTE); Retry-After gives the seconds to wait.',
  503: 'The decision log is unreachable, or the coordinator is shutting down; nothing was changed. Retry after Retry-After seconds.',
};

const headerOf = (description: string, schema: SchemaObject = { type: 'string' }) => ({ description, schema });

const PROBLEM_HEADERS: Record<number, Record<string, ReturnType<typeof headerOf>>> = {
  401: { 'WWW-Authenticate': headerOf('Bearer') },
  429: { 'Retry-After': headerOf('seconds until the client may send again', { type: 'integer' }) },
  503: { 'Retry-After': headerOf('seconds to wait before retrying', { type: 'integer' }) },
};

/** The problem+json answers an operation can give (CONTRACT section 2, Errors). */
export const ApiProblems = (...statuses: number[]) =>
  applyDecorators(
    ...statuses.map((status) =>
      ApiResponse({
        status,
        description: PROBLEMS[status],
        content: { 'application/problem+json': { schema: ref('Problem') } },
        ...(PROBLEM_HEADERS[status] ? { headers: PROBLEM_HEADERS[status] } : {}),
      }),
    ),
  );

/** A JSON answer whose body is one of the components. */
export const ApiJson = (status: number, component: ComponentName, description: string, headers?: Record<string, string>) =>
  ApiResponse({
    status,
    description,
    content: { 'application/json': { schema: ref(component) } },
    ...(headers ? { headers: Object.fromEntries(Object.entries(headers).map(([name, d]) => [name, headerOf(d)])) } : {}),
  });

/** A JSON request body that is one of the components. */
export const ApiJsonBody = (component: ComponentName, description: string, required = true) =>
  ApiBody({ required, description, schema: ref(component) });

/** One query parameter per field of a zod object schema (names, types, limits, defaults). */
export const ApiQueryFrom = (schema: z.AnyZodObject, descriptions: Record<string, string> = {}) =>
  applyDecorators(
    ...Object.entries(schema.shape as Record<string, z.ZodTypeAny>).map(([name, field]) =>
      ApiQuery({ name, required: !field.isOptional(), schema: parameterSchema(field), description: descriptions[name] ?? field.description }),
    ),
  );

/** The `{id}` path parameter: a transaction id. */
export const ApiTxId = () => ApiParam({ name: 'id', description: 'the transaction id', schema: parameterSchema(txIdSchema) });

export const ApiIdempotencyKey = () =>
  ApiHeader({
    name: 'Idempotency-Key',
    required: false,
    description: 'The same key with the same body returns the same transaction (200); with another body, 422.',
    schema: parameterSchema(idempotencyKeySchema),
  });

/** Builds the document from the application's controllers. */
export function buildOpenApiDocument(app: INestApplication, config: CoordinatorConfig): OpenAPIObject {
  const info = new DocumentBuilder()
    .setTitle('txcoord coordinator')
    .setDescription(
      'Distributed transactions with two-phase (and three-phase) commit: begin a transaction, enlist ' +
        'participants, commit or abort (CONTRACT section 2). Errors are application/problem+json (RFC 9457). ' +
        'With COORDINATOR_API_KEYS set, every /v1 path needs `Authorization: Bearer <key>`' +
        (config.apiKeys.length ? ' (set on this coordinator).' : ' (not set on this coordinator: no key is needed).') +
        (config.rateLimitPerMinute
          ? ` Rate limit: ${config.rateLimitPerMinute} requests per minute per client address on /v1 (protocol messages excepted).`
          : ''),
    )
    .setVersion('1')
    .addBearerAuth({ type: 'http', scheme: 'bearer', description: 'one of COORDINATOR_API_KEYS' }, 'api-key')
    .build();
  const document = SwaggerModule.createDocument(app, info);
  document.components ??= {};
  document.components.schemas = { ...document.components.schemas, ...componentSchemas() };
  return document;
}

/** Serves the UI at /docs and the JSON document at /docs-json (outside /v1: no key needed). */
export function setupOpenApi(app: INestApplication, config: CoordinatorConfig): OpenAPIObject {
  const document = buildOpenApiDocument(app, config);
  SwaggerModule.setup('docs', app, document, { jsonDocumentUrl: 'docs-json', yamlDocumentUrl: 'docs-yaml', customSiteTitle: 'txcoord API' });
  return document;
}
