import { z } from 'zod';
import { ProblemException } from './problem';

/** Parses input with a schema, or throws a 400 problem naming every bad field. */
export function validate<S extends z.ZodTypeAny>(schema: S, value: unknown, where: string): z.infer<S> {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  const errors = r.error.issues.map((i) => ({
    field: [where, ...i.path].join('.'),
    message: i.code === 'unrecognized_keys' ? `unknown field(s): ${i.keys.join(', ')}` : i.message,
  }));
  throw ProblemException.of(400, 'invalid-request', `Invalid ${where}: ${errors.map((e) => `${e.field} ${e.message}`).join('; ')}`, errors);
}
