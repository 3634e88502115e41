import type { HttpTransportOptions } from '../transport/http-transport';
import { ParticipantConfigError } from './errors';
import type { ParticipantCommonOptions } from './types';

/** Port of the participant's message endpoint when neither `httpPort` nor `PORT` is given. */
export const DEFAULT_HTTP_PORT = 4000;
export const DEFAULT_COORDINATOR_URL = 'http://localhost:3000';

export type HttpOptionNames = 'httpPort' | 'httpHost' | 'publicUrl' | 'coordinatorUrl' | 'apiKey';

export interface ParticipantHttpSettings {
  /** What the library gives HttpTransport (add a logger). */
  transport: HttpTransportOptions;
  /** Where the coordinator reaches this participant: enlist with it. */
  publicUrl: string;
}

/**
 * The HTTP transport of a participant (CONTRACT section 3b), from options first, then the
 * environment: port `httpPort` / `PORT` (default 4000), host `httpHost` / `HOST` (default
 * 127.0.0.1), `publicUrl` / `PARTICIPANT_URL` (default http://<host>:<port>), `coordinatorUrl` /
 * `COORDINATOR_URL` (default http://localhost:3000), `apiKey` / `COORDINATOR_API_KEY`, and
 * `TX_MESSAGE_SECRET`. Throws ParticipantConfigError naming the option or variable.
 */
export function httpOptionsFromEnv(
  options: Pick<ParticipantCommonOptions, HttpOptionNames> = {},
  env: NodeJS.ProcessEnv = process.env,
): ParticipantHttpSettings {
  const port = pick(options.httpPort, 'participant option httpPort', env.PORT, 'PORT');
  const portNumber = port ? Number(port.value) : DEFAULT_HTTP_PORT;
  if (port && !(/^\d+$/.test(String(port.value)) && portNumber >= 1 && portNumber <= 65535)) {
    throw new ParticipantConfigError(`${port.what} must be an integer port between 1 and 65535`);
  }
  const hostSetting = pick(options.httpHost, 'participant option httpHost', env.HOST, 'HOST');
  const host = hostSetting ? String(hostSetting.value) : '127.0.0.1';
  if (!/^[A-Za-z0-9.:-]{1,253}$/.test(host)) throw new ParticipantConfigError(`${hostSetting!.what} must be a host name or IP address`);

  const coordinator = pick(options.coordinatorUrl, 'participant option coordinatorUrl', env.COORDINATOR_URL, 'COORDINATOR_URL');
  const coordinatorUrl = httpUrl(coordinator?.value ?? DEFAULT_COORDINATOR_URL, coordinator?.what ?? 'COORDINATOR_URL');
  const ownUrl = pick(options.publicUrl, 'participant option publicUrl', env.PARTICIPANT_URL, 'PARTICIPANT_URL');
  const publicUrl = ownUrl ? httpUrl(ownUrl.value, ownUrl.what) : `http://${urlHost(host)}:${portNumber}`;

  const key = pick(options.apiKey, 'participant option apiKey', env.COORDINATOR_API_KEY, 'COORDINATOR_API_KEY');
  if (key && !/^\S+$/.test(String(key.value))) throw new ParticipantConfigError(`${key.what} must be one key without spaces`);
  const secret = env.TX_MESSAGE_SECRET || undefined;
  if (secret !== undefined && secret.length < 16) {
    throw new ParticipantConfigError('TX_MESSAGE_SECRET must be at least 16 characters');
  }
  return {
    transport: {
      role: 'participant',
      coordinatorUrl,
      apiKey: key ? String(key.value) : undefined,
      secret,
      listen: { host, port: portNumber },
    },
    publicUrl,
  };
}

/** The option if given, else the variable if set; with the words that name it in errors. */
function pick(option: unknown, optionName: string, variable: string | undefined, variableName: string) {
  if (option !== undefined) return { value: option, what: optionName };
  if (variable !== undefined && variable !== '') return { value: variable, what: variableName };
  return null;
}

function httpUrl(value: unknown, what: string): string {
  const url = typeof value === 'string' && URL.canParse(value) ? new URL(value) : null;
  if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:')) {
    throw new ParticipantConfigError(`${what} must be an http(s) URL`);
  }
  return String(value).replace(/\/+$/, '');
}

/** A bind address as others reach it: a wildcard means this machine; IPv6 goes in brackets. */
function urlHost(host: string): string {
  if (host === '0.0.0.0' || host === '::') return '127.0.0.1';
  return host.includes(':') ? `[${host}]` : host;
}
