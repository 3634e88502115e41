import { CanActivate, ExecutionContext, Inject, Injectable } from '@nestjs/common';
import { createHash, timingSafeEqual } from 'node:crypto';
import { CONFIG, CoordinatorConfig } from '../config/config';
import { ProblemException } from './problem';

const digest = (s: string) => createHash('sha256').update(s).digest();

/** With COORDINATOR_API_KEYS set, /v1 needs `Authorization: Bearer <key>`; compared in constant time. */
@Injectable()
export class ApiKeyGuard implements CanActivate {
  private readonly keys: Buffer[];

  constructor(@Inject(CONFIG) config: CoordinatorConfig) {
    this.keys = config.apiKeys.map(digest);
  }

  canActivate(ctx: ExecutionContext): boolean {
    if (this.keys.length === 0) return true;
    const header = ctx.switchToHttp().getRequest<{ headers: Record<string, string | undefined> }>().headers.authorization;
    const match = /^Bearer (\S+)$/.exec(header ?? '');
    const given = digest(match?.[1] ?? '');
    // Compare against every key so the time taken does not tell which (or whether one) matched.
    const ok = this.keys.reduce((found, key) => timingSafeEqual(key, given) || found, false);
    if (!ok || !match) {
      throw new ProblemException(
        { type: 'urn:txcoord:problem:unauthorized', title: 'Unauthorized', status: 401, detail: 'A valid API key is required: Authorization: Bearer <key>.' },
        { 'WWW-Authenticate': 'Bearer' },
      );
    }
    return true;
  }
}
