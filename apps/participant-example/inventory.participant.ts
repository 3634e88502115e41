import { Inject, Injectable } from '@nestjs/common';
import { z } from 'zod';
import type { DecisionContext, PrepareContext, TransactionParticipant, VoteResult } from '../../libs/participant';

export const INVENTORY_OPTIONS = Symbol('INVENTORY_OPTIONS');

export interface InventoryOptions {
  /** Quantity a SKU starts with the first time this participant sees it. */
  initialStock: number;
}

const reservationRequest = z.object({
  sku: z.string().min(1).max(200),
  qty: z.number().int().positive().max(2_147_483_647),
});

/**
 * An inventory: prepare reserves stock (decrements it and records a reservation), commit makes
 * the reservation final, abort puts the stock back. All through `ctx.manager`, the local
 * transaction in which the library also records its own state.
 */
@Injectable()
export class InventoryParticipant implements TransactionParticipant {
  constructor(@Inject(INVENTORY_OPTIONS) private readonly options: InventoryOptions) {}

  async prepare(ctx: PrepareContext): Promise<VoteResult> {
    const request = reservationRequest.safeParse(ctx.payload);
    if (!request.success) return { vote: 'no', reason: 'invalid-payload' };
    const { sku, qty } = request.data;
    await ctx.manager.query(
      `INSERT INTO example_stock (participant, sku, qty) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`,
      [ctx.participant, sku, this.options.initialStock],
    );
    const left: { qty: number }[] = await ctx.manager.query(
      `WITH taken AS (
         UPDATE example_stock SET qty = qty - $3
          WHERE participant = $1 AND sku = $2 AND qty >= $3
         RETURNING qty)
       SELECT qty FROM taken`,
      [ctx.participant, sku, qty],
    );
    if (left.length === 0) return { vote: 'no', reason: 'insufficient-stock' };
    await ctx.manager.query(
      `INSERT INTO example_reservation (tx_id, participant, sku, qty) VALUES ($1, $2, $3, $4)`,
      [ctx.txId, ctx.participant, sku, qty],
    );
    ctx.logger.info({ sku, qty, left: left[0].qty }, 'stock reserved');
    return 'yes';
  }

  async commit(ctx: DecisionContext): Promise<void> {
    await ctx.manager.query(`DELETE FROM example_reservation WHERE tx_id = $1 AND participant = $2`, [
      ctx.txId,
      ctx.participant,
    ]);
    ctx.logger.info('reservation committed');
  }

  async abort(ctx: DecisionContext): Promise<void> {
    await ctx.manager.query(
      `WITH released AS (
         DELETE FROM example_reservation WHERE tx_id = $1 AND participant = $2 RETURNING sku, qty)
       UPDATE example_stock s SET qty = s.qty + released.qty
         FROM released WHERE s.participant = $2 AND s.sku = released.sku`,
      [ctx.txId, ctx.participant],
    );
    ctx.logger.info({ reason: ctx.reason }, 'reservation released');
  }
}
