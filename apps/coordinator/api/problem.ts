import { HttpException } from '@nestjs/common';

/** A field-level complaint inside a problem document. */
export interface FieldError {
  field: string;
  message: string;
}

const TITLES: Record<number, string> = {
  400: 'Bad Request', 401: 'Unauthorized', 404: 'Not Found', 405: 'Method Not Allowed', 409: 'Conflict',
  413: 'Content Too Large', 415: 'Unsupported Media Type', 422: 'Unprocessable Content',
  429: 'Too Many Requests', 500: 'Internal Server Error', 503: 'Service Unavailable',
};

export function titleOf(status: number): string {
  return TITLES[status] ?? 'Error';
}

/** An RFC 9457 problem document (application/problem+json). */
export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  errors?: FieldError[];
}

export function problem(status: number, slug: string, detail: string, errors?: FieldError[]): Problem {
  return { type: `urn:txcoord:problem:${slug}`, title: titleOf(status), status, detail, ...(errors ? { errors } : {}) };
}

/** Thrown anywhere in a request: the filter answers with its problem document. */
export class ProblemException extends HttpException {
  constructor(
    readonly problem: Problem,
    readonly headers: Record<string, string> = {},
  ) {
    super(problem, problem.status);
  }

  static of(status: number, slug: string, detail: string, errors?: FieldError[]): ProblemException {
    return new ProblemException(problem(status, slug, detail, errors));
  }
}
