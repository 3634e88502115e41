import {
  DynamicModule,
  FactoryProvider,
  Inject,
  Injectable,
  Module,
  ModuleMetadata,
  OnApplicationBootstrap,
  OnModuleDestroy,
  Provider,
  Type,
} from '@nestjs/common';
import { ParticipantConfigError, startParticipant } from './start';
import type { ParticipantCommonOptions, ParticipantRuntime, TransactionParticipant } from './types';

/** Injection token of the resolved module options. */
export const PARTICIPANT_MODULE_OPTIONS = Symbol('txp:participant-module-options');
/** Injection token of the TransactionParticipant instance the runtime drives. */
export const TRANSACTION_PARTICIPANT = Symbol('txp:transaction-participant');

export interface ParticipantModuleOptions extends ParticipantCommonOptions {
  /**
   * The service's participant class. It is registered as a provider of this module, so it can
   * inject the service's providers: those of global modules, and the exports of `imports`.
   */
  participant: Type<TransactionParticipant>;
  /** Modules whose exported providers the participant class injects. */
  imports?: ModuleMetadata['imports'];
}

/** What `forRootAsync`'s factory returns: the options, and optionally a participant instance. */
export type ParticipantModuleFactoryResult = ParticipantCommonOptions & { participant?: TransactionParticipant };

export interface ParticipantModuleAsyncOptions {
  imports?: ModuleMetadata['imports'];
  /** Providers passed to `useFactory`, in order. */
  inject?: FactoryProvider['inject'];
  useFactory: (...args: any[]) => ParticipantModuleFactoryResult | Promise<ParticipantModuleFactoryResult>;
  /** The participant class, registered as a provider; or return an instance from `useFactory`. */
  participant?: Type<TransactionParticipant>;
}

/** Starts the participant runtime when the application boots and stops it on shutdown. */
@Injectable()
export class ParticipantService implements OnApplicationBootstrap, OnModuleDestroy {
  private runtime?: ParticipantRuntime;

  constructor(
    @Inject(PARTICIPANT_MODULE_OPTIONS) private readonly options: ParticipantModuleFactoryResult,
    @Inject(TRANSACTION_PARTICIPANT) private readonly participant: TransactionParticipant | undefined,
  ) {}

  /** True while the runtime is consuming (for health checks). */
  get ready(): boolean {
    return this.runtime?.ready ?? false;
  }

  /** With the default HTTP transport, the URL to enlist with; otherwise null. */
  get url(): string | null {
    return this.runtime?.url ?? null;
  }

  async onApplicationBootstrap(): Promise<void> {
    if (!this.participant) {
      throw new ParticipantConfigError(
        'ParticipantModule: no participant: give forRootAsync a participant class or return an instance from useFactory',
      );
    }
    const { participant: _ignored, ...options } = this.options;
    this.runtime = await startParticipant({ ...options, participant: this.participant });
  }

  async onModuleDestroy(): Promise<void> {
    // Runs before the application's other providers (and data sources) are torn down.
    await this.runtime?.stop();
    this.runtime = undefined;
  }
}

/**
 * The participant library as one Nest module:
 *
 * ```ts
 * @Module({ imports: [ParticipantModule.forRoot({ name: 'inventory', participant: InventoryParticipant })] })
 * ```
 */
@Module({})
export class ParticipantModule {
  static forRoot(options: ParticipantModuleOptions): DynamicModule {
    const { participant, imports, ...rest } = options;
    if (typeof participant !== 'function') {
      throw new ParticipantConfigError('ParticipantModule.forRoot: participant must be an injectable class');
    }
    return {
      module: ParticipantModule,
      imports: imports ?? [],
      providers: [
        { provide: PARTICIPANT_MODULE_OPTIONS, useValue: rest },
        participant,
        { provide: TRANSACTION_PARTICIPANT, useExisting: participant },
        ParticipantService,
      ],
      exports: [ParticipantService, TRANSACTION_PARTICIPANT],
    };
  }

  static forRootAsync(options: ParticipantModuleAsyncOptions): DynamicModule {
    const participantProviders: Provider[] = options.participant
      ? [options.participant, { provide: TRANSACTION_PARTICIPANT, useExisting: options.participant }]
      : [
          {
            provide: TRANSACTION_PARTICIPANT,
            useFactory: (o: ParticipantModuleFactoryResult) => o.participant,
            inject: [PARTICIPANT_MODULE_OPTIONS],
          },
        ];
    return {
      module: ParticipantModule,
      imports: options.imports ?? [],
      providers: [
        { provide: PARTICIPANT_MODULE_OPTIONS, useFactory: options.useFactory, inject: options.inject ?? [] },
        ...participantProviders,
        ParticipantService,
      ],
      exports: [ParticipantService, TRANSACTION_PARTICIPANT],
    };
  }
}
