import { DynamicModule, Module } from '@nestjs/common';
import type { Logger } from 'pino';
import type { DataSource } from 'typeorm';
import { ParticipantModule } from '../../libs/participant';
import type { MessageTransport } from '../../libs/transport/transport';
import { INVENTORY_OPTIONS, InventoryOptions, InventoryParticipant } from './inventory.participant';

/** Provides the inventory's own settings to InventoryParticipant. */
@Module({})
export class InventoryConfigModule {
  static register(options: InventoryOptions): DynamicModule {
    return {
      module: InventoryConfigModule,
      providers: [{ provide: INVENTORY_OPTIONS, useValue: options }],
      exports: [INVENTORY_OPTIONS],
    };
  }
}

export interface InventoryAppOptions extends InventoryOptions {
  name: string;
  dataSource: DataSource;
  logger: Logger;
  /** Default: Kafka when KAFKA_BROKERS is set, otherwise HTTP. */
  transport?: MessageTransport;
  /** HTTP transport: the port of the message endpoint. */
  httpPort?: number;
  statusRequestAfterMs?: number;
}

/** The member service: one module import and one class. */
@Module({})
export class InventoryAppModule {
  static register(o: InventoryAppOptions): DynamicModule {
    return {
      module: InventoryAppModule,
      imports: [
        ParticipantModule.forRoot({
          name: o.name,
          participant: InventoryParticipant,
          imports: [InventoryConfigModule.register({ initialStock: o.initialStock })],
          dataSource: o.dataSource,
          transport: o.transport,
          httpPort: o.httpPort,
          logger: o.logger,
          statusRequestAfterMs: o.statusRequestAfterMs,
        }),
      ],
    };
  }
}
