// Starts real eva-hub processes for the tests (no mocks): each on a random
// port with a fresh store, stopped by PID. The binary comes from
// EVA_HUB_BIN, or the workspace's own debug build.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as net from 'node:net';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after } from 'node:test';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { EvaClient, type ClientOptions, type WebSocketConstructor } from '../src/index.js';

const packageRoot = fileURLToPath(new URL('../../', import.meta.url));

export function hubBinary(): string {
  const bin = process.env.EVA_HUB_BIN || join(packageRoot, '../../target/debug/eva-hub');
  if (!existsSync(bin)) {
    throw new Error(`eva-hub binary not found at ${bin}: run \`cargo build\` in the repository root, or set EVA_HUB_BIN`);
  }
  return bin;
}

// Whatever a test leaves open is closed when its file ends, pass or fail,
// so a failed assertion never leaves a process waiting on a socket.
const openClients = new Set<EvaClient>();
const runningHubs = new Set<ChildProcess>();
after(() => {
  for (const c of openClients) c.close();
});
process.on('exit', () => {
  for (const child of runningHubs) child.kill('SIGKILL');
});

/** An EvaClient closed automatically at the end of the test file. */
export function newClient(opts: ClientOptions): EvaClient {
  const c = new EvaClient(opts);
  openClients.add(c);
  return c;
}

export interface Hub {
  /** ws://127.0.0.1:port/v1/ws */
  readonly wsUrl: string;
  /** http://127.0.0.1:port */
  readonly httpUrl: string;
  readonly listen: string;
  readonly process: ChildProcess;
  /** SIGTERM (the hub closes clients with 1012) and wait for the exit. */
  stop(): Promise<void>;
}

export interface HubOptions {
  /** EVA_HUB__* overrides. */
  env?: Record<string, string>;
  /** `--dev` (plain claims as tokens, no REST keys). Default true. */
  dev?: boolean;
  databaseUrl?: string;
  /** A fixed address (to restart a hub where clients expect it). */
  listen?: string;
}

export async function startHub(opts: HubOptions = {}): Promise<Hub> {
  const bin = hubBinary();
  const args = [
    'serve',
    ...(opts.dev === false ? [] : ['--dev']),
    '--listen',
    opts.listen ?? '127.0.0.1:0',
    '--metrics-listen',
    '127.0.0.1:0',
    '--database-url',
    opts.databaseUrl ?? 'memory',
  ];
  const child = spawn(bin, args, {
    env: { ...process.env, EVA_HUB__LOG__FORMAT: 'json', ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  runningHubs.add(child);
  const log: string[] = [];
  const exited = new Promise<void>((resolve) =>
    child.once('exit', () => {
      runningHubs.delete(child);
      resolve();
    }),
  );
  const listen = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the hub did not start within 20 s:\n${log.slice(-20).join('\n')}`)), 20_000);
    const onLine = (line: string) => {
      log.push(line);
      if (log.length > 200) log.shift();
      if (!line.includes('eva-hub serving')) return;
      try {
        const rec = JSON.parse(line) as { message?: string; listen?: string };
        if (rec.message === 'eva-hub serving' && rec.listen) {
          clearTimeout(timer);
          resolve(rec.listen);
        }
      } catch {
        // not JSON: keep reading
      }
    };
    for (const stream of [child.stdout, child.stderr]) {
      let buf = '';
      stream?.setEncoding('utf8');
      stream?.on('data', (chunk: string) => {
        buf += chunk;
        let nl: number;
        while ((nl = buf.indexOf('\n')) >= 0) {
          onLine(buf.slice(0, nl));
          buf = buf.slice(nl + 1);
        }
      });
    }
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`the hub exited with ${code} before serving:\n${log.slice(-20).join('\n')}`));
    });
  });
  return {
    wsUrl: `ws://${listen}/v1/ws`,
    httpUrl: `http://${listen}`,
    listen,
    process: child,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const killer = setTimeout(() => child.kill('SIGKILL'), 8_000);
      await exited;
      clearTimeout(killer);
    },
  };
}

/** A production-mode hub (HS256 tokens, SQLite, an admin API key). */
export interface ProdHub extends Hub {
  readonly adminKey: string;
  readonly dir: string;
}

export async function startProdHub(env: Record<string, string> = {}): Promise<ProdHub> {
  const dir = mkdtempSync(join(tmpdir(), 'eva-hub-sdk-'));
  const databaseUrl = `sqlite://${join(dir, 'eva.db')}`;
  const authEnv = {
    EVA_HUB_JWT_SECRET: 'sdk-test-secret-0123456789abcdef0123456789abcdef',
    EVA_HUB__AUTH__KEYS: '[{kid="k1",algorithm="HS256",secret_env="EVA_HUB_JWT_SECRET"}]',
    EVA_HUB__LOG__FORMAT: 'json',
    ...env,
  };
  const created = spawnSync(
    hubBinary(),
    ['keys', 'create', '--database-url', databaseUrl, '--email', 'sdk@example.com', '--name', 'admin', '--scope', 'eva:admin', '--max-connections', '100'],
    { env: { ...process.env, ...authEnv }, encoding: 'utf8' },
  );
  const adminKey = created.stdout.trim().split('\n').pop() ?? '';
  if (created.status !== 0 || adminKey === '') {
    throw new Error(`eva-hub keys create failed (${created.status}): ${created.stderr}`);
  }
  const hub = await startHub({ dev: false, databaseUrl, env: authEnv });
  return {
    ...hub,
    adminKey,
    dir,
    async stop() {
      await hub.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * A `ws` WebSocket class whose sockets a test can reach: kill them (no
 * close frame, like a network failure), keep new ones from connecting (as
 * if the network were down), or hide incoming messages.
 */
export interface SocketControl {
  readonly WebSocket: WebSocketConstructor;
  readonly sockets: WebSocket[];
  /** While false, new sockets go to a closed port and fail. */
  online: boolean;
  /** Incoming messages for which this returns true never reach the client. */
  drop: ((data: unknown) => boolean) | undefined;
  /** Ends the newest socket's TCP connection without a close frame. */
  kill(): void;
}

export function socketControl(extra: { origin?: string } = {}): SocketControl {
  const control: SocketControl = {
    WebSocket: undefined as unknown as WebSocketConstructor,
    sockets: [],
    online: true,
    drop: undefined,
    kill() {
      const ws = control.sockets.at(-1) as unknown as { _socket?: { destroy(): void } } | undefined;
      ws?._socket?.destroy();
    },
  };
  class ControlledWebSocket extends WebSocket {
    constructor(url: string, protocols: string[], options: WebSocket.ClientOptions = {}) {
      super(control.online ? url : 'ws://127.0.0.1:1/v1/ws', protocols, {
        ...options,
        ...(extra.origin ? { origin: extra.origin } : {}),
      });
      control.sockets.push(this);
      // `ws` keeps `onmessage` as an accessor on its prototype: wrap it
      // on this instance to filter what the client sees.
      const accessor = Object.getOwnPropertyDescriptor(WebSocket.prototype, 'onmessage');
      Object.defineProperty(this, 'onmessage', {
        configurable: true,
        get: () => accessor?.get?.call(this),
        set: (fn: ((ev: WebSocket.MessageEvent) => void) | null) => {
          accessor?.set?.call(
            this,
            fn &&
              ((ev: WebSocket.MessageEvent) => {
                if (control.drop?.(ev.data)) return;
                fn(ev);
              }),
          );
        },
      });
    }
  }
  (control as { WebSocket: WebSocketConstructor }).WebSocket = ControlledWebSocket as unknown as WebSocketConstructor;
  return control;
}

/** Resolves when `cond()` is true (polled), or fails after `ms` with `what`. */
export async function waitFor(cond: () => boolean, what: string, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Decodes a test-visible message (text JSON or msgpack bytes) just enough to look at `type`. */
export function frameType(data: unknown): string | undefined {
  if (typeof data === 'string') return (JSON.parse(data) as { type?: string }).type;
  return undefined;
}

/** The next emission of a session or client event, as a promise. */
export function next<A extends unknown[]>(on: (fn: (...args: A) => void) => () => void, ms = 10_000): Promise<A> {
  return new Promise<A>((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error('timed out waiting for an event'));
    }, ms);
    const off = on((...args: A) => {
      clearTimeout(timer);
      off();
      resolve(args);
    });
  });
}

/**
 * A TCP relay in front of a hub, to play a network partition: `freeze()`
 * stops forwarding on every connection open at that moment without closing
 * anything (neither side learns of it: a half-open connection), while new
 * connections pass as usual.
 */
export interface Relay {
  /** ws://127.0.0.1:port/v1/ws, through the relay. */
  readonly wsUrl: string;
  freeze(): void;
  close(): Promise<void>;
}

export async function startRelay(target: string): Promise<Relay> {
  const [host, port] = target.split(':') as [string, string];
  const live = new Set<{ frozen: boolean; sockets: net.Socket[] }>();
  const server = net.createServer((down) => {
    const up = net.connect(Number(port), host);
    const pair = { frozen: false, sockets: [down, up] };
    live.add(pair);
    const pipe = (from: net.Socket, to: net.Socket) =>
      from.on('data', (chunk) => {
        if (!pair.frozen) to.write(chunk);
      });
    pipe(down, up);
    pipe(up, down);
    const end = () => {
      if (pair.frozen) return; // a partition: nobody hears of it
      live.delete(pair);
      down.destroy();
      up.destroy();
    };
    for (const s of pair.sockets) {
      s.on('close', end);
      s.on('error', end);
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port: relayPort } = server.address() as net.AddressInfo;
  return {
    wsUrl: `ws://127.0.0.1:${relayPort}/v1/ws`,
    freeze() {
      for (const pair of live) pair.frozen = true;
    },
    async close() {
      for (const pair of live) for (const s of pair.sockets) s.destroy();
      live.clear();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
