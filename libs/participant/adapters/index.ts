export {
  ResourceParticipant,
  ResourceNotReadyError,
  AtomicityViolationError,
  COMMIT_MARKER_TABLE,
} from './resource-participant';
export type {
  ResourceParticipantOptions,
  ResourceDriver,
  RecoveryReport,
  PreparedEntry,
  FinishResult,
} from './resource-participant';
export { postgresPreparedParticipant, PostgresDriver } from './postgres-prepared';
export type { PostgresPreparedOptions } from './postgres-prepared';
export { mariadbXaParticipant, MariaDbXaDriver, XA_FORMAT_ID } from './mariadb-xa';
export type { MariaDbXaOptions } from './mariadb-xa';
