import { ConfigError, loadConfig } from './config';

describe('coordinator configuration: TX_PARTICIPANT_URLS', () => {
  it('is empty by default and maps names to URLs', () => {
    expect(loadConfig({}).participantUrls).toEqual(new Map());
    expect(loadConfig({ TX_PARTICIPANT_URLS: 'inventory=http://inv:4000/,pay.ments=https://pay.example/base' }).participantUrls).toEqual(
      new Map([['inventory', 'http://inv:4000'], ['pay.ments', 'https://pay.example/base']]),
    );
  });

  it.each([
    ['inventory', /must be a comma-separated list of name=http\(s\):\/\/host:port \(got "inventory"\)/],
    ['inventory=ftp://inv', /must be a comma-separated list/],
    ['bad name=http://x', /must be a comma-separated list/],
    ['a=http://x,,b=http://y', /must be a comma-separated list/],
    ['a=http://[nope', /has an invalid URL for a/],
    ['a=http://x,a=http://y', /names a twice/],
  ])('refuses %j with one line naming the variable', (value, message) => {
    expect(() => loadConfig({ TX_PARTICIPANT_URLS: value })).toThrow(ConfigError);
    expect(() => loadConfig({ TX_PARTICIPANT_URLS: value })).toThrow(/^configuration error: TX_PARTICIPANT_URLS /);
    expect(() => loadConfig({ TX_PARTICIPANT_URLS: value })).toThrow(message);
  });
});
