/** Bad options or environment; the message names the option or variable. */
export class ParticipantConfigError extends Error {
  override name = 'ParticipantConfigError';
}
