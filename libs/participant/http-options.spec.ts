import { ParticipantConfigError } from './errors';
import { httpOptionsFromEnv } from './http-options';

describe('httpOptionsFromEnv', () => {
  it('has defaults for everything', () => {
    expect(httpOptionsFromEnv({}, {})).toEqual({
      transport: { role: 'participant', coordinatorUrl: 'http://localhost:3000', apiKey: undefined, secret: undefined, listen: { host: '127.0.0.1', port: 4000 } },
      publicUrl: 'http://127.0.0.1:4000',
    });
  });

  it('reads the environment, and options win over it', () => {
    const env = { PORT: '4100', HOST: '0.0.0.0', COORDINATOR_URL: 'http://coord:3000/', COORDINATOR_API_KEY: 'key-1', TX_MESSAGE_SECRET: 's'.repeat(16) };
    expect(httpOptionsFromEnv({}, env)).toEqual({
      transport: { role: 'participant', coordinatorUrl: 'http://coord:3000', apiKey: 'key-1', secret: 's'.repeat(16), listen: { host: '0.0.0.0', port: 4100 } },
      publicUrl: 'http://127.0.0.1:4100', // a wildcard address is reached as this machine
    });
    const o = httpOptionsFromEnv({ httpPort: 4200, httpHost: '::1', apiKey: 'key-2', publicUrl: 'https://inv.example/' }, env);
    expect(o.transport).toMatchObject({ apiKey: 'key-2', listen: { host: '::1', port: 4200 } });
    expect(o.publicUrl).toBe('https://inv.example');
    expect(httpOptionsFromEnv({ httpHost: '::1' }, {}).publicUrl).toBe('http://[::1]:4000');
    expect(httpOptionsFromEnv({}, { PARTICIPANT_URL: 'http://inv:4000' }).publicUrl).toBe('http://inv:4000');
  });

  it.each([
    [{ httpPort: 0 }, {}, /participant option httpPort must be an integer port/],
    [{}, { PORT: '65536' }, /^PORT must be an integer port/],
    [{}, { HOST: 'a host' }, /^HOST must be a host name/],
    [{}, { COORDINATOR_URL: 'localhost:3000' }, /^COORDINATOR_URL must be an http\(s\) URL/],
    [{ publicUrl: 'ftp://x' }, {}, /participant option publicUrl must be an http\(s\) URL/],
    [{}, { COORDINATOR_API_KEY: 'two words' }, /^COORDINATOR_API_KEY must be one key/],
    [{}, { TX_MESSAGE_SECRET: 'short' }, /^TX_MESSAGE_SECRET must be at least 16/],
  ])('names the bad setting: %j %j', (options, env, message) => {
    expect(() => httpOptionsFromEnv(options, env)).toThrow(ParticipantConfigError);
    expect(() => httpOptionsFromEnv(options, env)).toThrow(message);
  });
});
