/**
 * A TCP proxy a test puts between a process and a server (here: the coordinator and Postgres) to
 * break the connection for real without touching the shared server: `cut()` resets every open
 * connection (RST) and resets new ones at once until `restore()`, which is what a client sees when
 * the server restarts or the network drops; `blackhole()` accepts and forwards nothing (a hang).
 */
import { createServer, Server, Socket, connect } from 'node:net';
import { AddressInfo } from 'node:net';

export interface TcpProxy {
  port: number;
  /** `url` with its host and port replaced by the proxy's. */
  via(url: string): string;
  cut(): void;
  blackhole(): void;
  restore(): void;
  /** Connections accepted so far. */
  readonly accepted: number;
  close(): Promise<void>;
}

export async function startTcpProxy(target: { host: string; port: number }): Promise<TcpProxy> {
  let mode: 'up' | 'cut' | 'blackhole' = 'up';
  let accepted = 0;
  const open = new Set<Socket>();
  const reset = (s: Socket) => (typeof s.resetAndDestroy === 'function' ? s.resetAndDestroy() : s.destroy());

  const server: Server = createServer((client) => {
    accepted++;
    client.on('error', () => undefined);
    if (mode === 'cut') return reset(client);
    open.add(client);
    client.once('close', () => open.delete(client));
    if (mode === 'blackhole') return; // accepted, never answered
    const upstream = connect(target.port, target.host);
    open.add(upstream);
    upstream.on('error', () => client.destroy());
    client.on('error', () => upstream.destroy());
    upstream.once('close', () => { open.delete(upstream); client.destroy(); });
    client.once('close', () => upstream.destroy());
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;

  const dropAll = () => {
    for (const s of open) reset(s);
    open.clear();
  };
  return {
    port,
    via(url: string) {
      const u = new URL(url);
      u.hostname = '127.0.0.1';
      u.port = String(port);
      return u.toString();
    },
    cut() {
      mode = 'cut';
      dropAll();
    },
    blackhole() {
      mode = 'blackhole';
      dropAll();
    },
    restore() {
      mode = 'up';
      dropAll(); // blackholed connections never recover; the clients reconnect
    },
    get accepted() {
      return accepted;
    },
    close() {
      dropAll();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}
