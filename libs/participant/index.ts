export {
  startParticipant,
  ParticipantConfigError,
  DEFAULT_TIMING,
  validateDatabaseUrl,
  kafkaOptionsFromEnv,
  defaultTransportOptions,
} from './start';
export type { DefaultTransportOptions } from './start';
export { httpOptionsFromEnv, DEFAULT_HTTP_PORT, DEFAULT_COORDINATOR_URL } from './http-options';
export type { ParticipantHttpSettings } from './http-options';
export {
  ParticipantModule,
  ParticipantService,
  PARTICIPANT_MODULE_OPTIONS,
  TRANSACTION_PARTICIPANT,
} from './participant.module';
export type {
  ParticipantModuleOptions,
  ParticipantModuleAsyncOptions,
  ParticipantModuleFactoryResult,
} from './participant.module';
export { enlist, EnlistError, enlistBreakers, BreakerOpenError } from './enlist';
export type { EnlistOptions, TransactionView } from './enlist';
export {
  AddParticipantMove1796600000000,
  CreateParticipantLog1732300000000,
  PARTICIPANT_LOG_TABLE,
  PARTICIPANT_MIGRATIONS,
  runParticipantMigrations,
} from './schema';
export type {
  TransactionParticipant,
  PrepareContext,
  DecisionContext,
  VoteResult,
  ParticipantOptions,
  ParticipantCommonOptions,
  ParticipantRuntime,
  ParticipantTxState,
} from './types';
export * from './adapters';
