import type { DataSource } from 'typeorm';

/** The example's own tables; several example participants may share one database. */
export async function ensureInventorySchema(ds: DataSource): Promise<void> {
  await ds.transaction(async (m) => {
    // Two instances starting at once must not race on CREATE TABLE.
    await m.query(`SELECT pg_advisory_xact_lock(hashtextextended('example_inventory_schema', 0))`);
    await m.query(`
      CREATE TABLE IF NOT EXISTS example_stock (
        participant text NOT NULL,
        sku         text NOT NULL,
        qty         int  NOT NULL CHECK (qty >= 0),
        PRIMARY KEY (participant, sku)
      )`);
    await m.query(`
      CREATE TABLE IF NOT EXISTS example_reservation (
        tx_id       uuid NOT NULL,
        participant text NOT NULL,
        sku         text NOT NULL,
        qty         int  NOT NULL CHECK (qty > 0),
        PRIMARY KEY (tx_id, participant)
      )`);
  });
}
