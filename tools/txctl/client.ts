/** The few REST calls txctl makes (CONTRACT section 2 and the admin endpoints), with node's fetch. */

export interface TxParticipant {
  name: string;
  vote: 'yes' | 'no' | null;
  acked: boolean;
  payload: Record<string, unknown>;
  url?: string | null;
  voteReason?: string | null;
  preCommitted?: boolean;
}

export interface Tx {
  id: string;
  protocol: string;
  state: string;
  outcome: 'commit' | 'abort' | null;
  reason: string | null;
  timeoutMs: number;
  createdAt: string;
  decidedAt: string | null;
  completedAt: string | null;
  deadline: string;
  participants: TxParticipant[];
  metadata: Record<string, unknown>;
}

export interface ActionResult {
  action: 'resend' | 'abort';
  result: string;
  /** `type:participant` of each message sent by the action. */
  sent: string[];
  transaction: Tx;
}

export interface AuditEntry {
  id: number;
  at: string;
  actor: string;
  action: string;
  txId: string;
  result: string;
  reason: string | null;
  detail: string | null;
}

/** A non-2xx answer; `problem` is the problem+json body when there is one. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly problem: { title?: string; detail?: string } | null,
    readonly text: string,
  ) {
    super(`HTTP ${status}`);
  }

  describe(command: string): string {
    const detail = this.problem?.detail ?? (this.text.trim().slice(0, 300) || this.problem?.title || 'no detail');
    if (this.status === 401) return `unauthorized (401): ${detail} Set TXCTL_API_KEY to one of the coordinator's COORDINATOR_API_KEYS.`;
    if (this.status === 409) return `refused (409): ${detail}`;
    if (this.status === 404 && !this.problem?.detail) return `not found (404): this coordinator does not serve ${command} (${detail})`;
    return `${this.problem?.title ?? 'error'} (${this.status}): ${detail}`;
  }
}

const REQUEST_TIMEOUT_MS = 15_000;
/** Largest page the list endpoint serves. */
const PAGE = 200;

export class Client {
  private readonly base: string;

  constructor(base: string, private readonly apiKey?: string) {
    this.base = base.replace(/\/+$/, '');
  }

  get(id: string): Promise<Tx> {
    return this.call('GET', `/v1/transactions/${encodeURIComponent(id)}`);
  }

  /** Up to `limit` transactions, newest first, following the cursor across pages. */
  async list(q: { state?: string; participant?: string; limit: number }): Promise<Tx[]> {
    const items: Tx[] = [];
    let cursor: string | null = null;
    do {
      const params = new URLSearchParams({ limit: String(Math.min(PAGE, q.limit - items.length)) });
      if (q.state) params.set('state', q.state);
      if (q.participant) params.set('participant', q.participant);
      if (cursor) params.set('cursor', cursor);
      const page: { items: Tx[]; nextCursor: string | null } = await this.call('GET', `/v1/transactions?${params}`);
      items.push(...page.items);
      cursor = page.nextCursor;
    } while (cursor && items.length < q.limit);
    return items;
  }

  action(id: string, action: 'resend' | 'abort', reason?: string): Promise<ActionResult> {
    return this.call('POST', `/v1/admin/transactions/${encodeURIComponent(id)}/${action}`, reason === undefined ? undefined : { reason });
  }

  async audit(txId: string | undefined, limit: number): Promise<AuditEntry[]> {
    const params = new URLSearchParams({ limit: String(limit) });
    if (txId) params.set('txId', txId);
    return (await this.call<{ items: AuditEntry[] }>('GET', `/v1/admin/audit?${params}`)).items;
  }

  private async call<T>(method: string, path: string, body?: unknown): Promise<T> {
    const headers: Record<string, string> = { accept: 'application/json, application/problem+json' };
    if (this.apiKey) headers.authorization = `Bearer ${this.apiKey}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    const r = await fetch(this.base + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    });
    const text = await r.text();
    let json: unknown = null;
    try {
      json = text ? JSON.parse(text) : null;
    } catch {
      /* not JSON: kept as text */
    }
    if (!r.ok) throw new HttpError(r.status, json && typeof json === 'object' ? (json as HttpError['problem']) : null, text);
    return json as T;
  }
}
