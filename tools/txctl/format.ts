/** txctl's text output: aligned tables and short lines, plain ASCII. */
import { AuditEntry, Tx, TxParticipant } from './client';

export type { Tx } from './client';

const dash = (v: string | null | undefined) => (v === null || v === undefined || v === '' ? '-' : v);

export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]))).join('  ').trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}

/** `inventory:yes+ack` per participant: its vote (or `?`) and whether it acknowledged the outcome. */
function participantSummary(p: TxParticipant): string {
  return `${p.name}:${p.vote ?? '?'}${p.acked ? '+ack' : ''}`;
}

export function formatList(items: Tx[]): string {
  if (items.length === 0) return 'no transactions';
  return table(
    ['ID', 'STATE', 'OUTCOME', 'REASON', 'CREATED', 'PARTICIPANTS'],
    items.map((t) => [t.id, t.state, dash(t.outcome), dash(t.reason), t.createdAt, t.participants.map(participantSummary).join(' ') || '-']),
  );
}

export function formatShow(t: Tx): string {
  const acked = t.participants.filter((p) => p.acked).length;
  const lines = [
    `id:           ${t.id}`,
    `protocol:     ${t.protocol}`,
    `state:        ${t.state}`,
    `outcome:      ${dash(t.outcome)}`,
    `reason:       ${dash(t.reason)}`,
    `timeout:      ${t.timeoutMs} ms`,
    `created:      ${t.createdAt}`,
    `deadline:     ${t.deadline}`,
    `decided:      ${dash(t.decidedAt)}`,
    `completed:    ${dash(t.completedAt)}`,
    `metadata:     ${JSON.stringify(t.metadata)}`,
    `participants: ${t.participants.length} (${acked} acknowledged)`,
  ];
  if (t.participants.length) {
    const threePc = t.protocol === '3pc';
    const header = ['  NAME', 'VOTE', ...(threePc ? ['PRE-COMMITTED'] : []), 'ACKED', 'VOTE REASON', 'PAYLOAD'];
    lines.push(table(header, t.participants.map((p) => [
      `  ${p.name}`, dash(p.vote), ...(threePc ? [p.preCommitted ? 'yes' : 'no'] : []), p.acked ? 'yes' : 'no', dash(p.voteReason), JSON.stringify(p.payload),
    ])));
  }
  return lines.join('\n');
}

/** One line of `follow`: the time, the state, and what changed since the previous line. */
export function formatTransition(before: Tx | null, t: Tx): string {
  const parts = [new Date().toISOString(), t.state.padEnd(12)];
  parts.push(`outcome=${dash(t.outcome)}`);
  if (t.reason) parts.push(`reason=${t.reason}`);
  const votes = t.participants.filter((p) => p.vote !== null).length;
  const acks = t.participants.filter((p) => p.acked).length;
  parts.push(`votes ${votes}/${t.participants.length}`, `acks ${acks}/${t.participants.length}`);
  if (before) {
    const was = new Map(before.participants.map((p) => [p.name, p]));
    const news = t.participants.flatMap((p) => {
      const b = was.get(p.name);
      const n: string[] = [];
      if (!b) n.push(`${p.name} enlisted`);
      if (p.vote !== null && b?.vote !== p.vote) n.push(`${p.name} voted ${p.vote}${p.voteReason ? ` (${p.voteReason})` : ''}`);
      if (p.acked && !b?.acked) n.push(`${p.name} acked`);
      return n;
    });
    if (news.length) parts.push(`[${news.join(', ')}]`);
  }
  return parts.join('  ');
}

export function formatAudit(items: AuditEntry[]): string {
  if (items.length === 0) return 'no audit records';
  return table(
    ['AT', 'ACTOR', 'ACTION', 'TRANSACTION', 'RESULT', 'REASON', 'DETAIL'],
    items.map((a) => [a.at, a.actor, a.action, a.txId, a.result, dash(a.reason), dash(a.detail)]),
  );
}
