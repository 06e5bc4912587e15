// The TypeScript client of Interstice's client protocol, version 1, JSON
// encoding (docs/client-protocol.md): one WebSocket session per Client,
// reducer calls that resolve once durable (pipelined), subscriptions to SQL
// queries kept in a live cache with insert/update/delete events, one-off
// queries, and reconnection that resubscribes and brings the cache back to
// the server's state. Works with the browser's WebSocket and, on Node, with
// the `ws` package.

/** The subprotocol of the encoding this client speaks. */
export const PROTOCOL = "interstice.v1.json";

export interface ConnectOptions {
  /** The server: `http://host:port` (or `ws://`). */
  url: string;
  module: string;
  /** An identity token or the admin token. Without one the server issues
   * an identity (when it allows anonymous sessions); `client.token` then
   * holds its token, to come back as the same identity. */
  token?: string;
  /** The schema fingerprint generated code was built from: a session on a
   * module whose schema differs is refused. */
  schema?: string;
  /** Open a lost connection again and resubscribe (default: true). */
  reconnect?: boolean;
}

export interface CallResult {
  txId: number;
  timestamp: number;
}

export interface QueryResult {
  txId: number;
  columns: { name: string; type: string }[];
  rows: unknown[][];
}

/** A request the server answered with an error. */
export class ServerError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly field?: string,
  ) {
    super(`${code}: ${message}`);
    this.name = "ServerError";
  }
}

/** The connection was lost with the request in flight: a call may or may
 * not have committed. */
export class DisconnectedError extends Error {
  constructor() {
    super("the connection was lost before the answer came");
    this.name = "DisconnectedError";
  }
}

/** The session is over for good. */
export class ClosedError extends Error {
  constructor(
    readonly code: number,
    readonly reason: string,
  ) {
    super(`the session is closed (${code}): ${reason}`);
    this.name = "ClosedError";
  }
}

/** The module's schema is not the one the code was generated from. */
export class SchemaError extends Error {
  constructor(
    readonly module: string,
    readonly expected: string,
    readonly found: string,
  ) {
    super(
      `module \`${module}\` has schema ${found}, not ${expected} that this code was generated from: generate it again`,
    );
    this.name = "SchemaError";
  }
}

export type ClientEvent =
  | { kind: "insert"; table: string; row: Row }
  | { kind: "update"; table: string; old: Row; row: Row }
  | { kind: "delete"; table: string; row: Row }
  | { kind: "transaction"; txId: number; reducer: string }
  | { kind: "disconnected" }
  | { kind: "reconnected" };

export type Row = Record<string, unknown>;

interface QueryRows {
  table: string;
  key: string;
  rows: Map<string, Row>;
}

interface LocalSub {
  queries: string[];
  serverId: number | null;
  rows: QueryRows[];
}

interface Pending {
  resolve: (m: any) => void;
  reject: (e: Error) => void;
}

/** The WebSocket constructor: the platform's, else the `ws` package's. */
async function webSocketClass(): Promise<any> {
  const platform = (globalThis as any).WebSocket;
  if (platform) return platform;
  const ws: any = await import("ws");
  return ws.default ?? ws.WebSocket;
}

function keyOf(row: Row, key: string): string {
  return JSON.stringify(row[key]);
}

/** A typed view of one table of the cache. */
export class Table<T> {
  constructor(
    private readonly client: Client,
    readonly name: string,
  ) {}

  /** The cached rows, in primary-key order (as JSON text). */
  rows(): T[] {
    return this.client.rows(this.name) as T[];
  }

  count(): number {
    return this.client.rows(this.name).length;
  }

  /** The cached row whose primary key is `key`. */
  get(key: unknown): T | undefined {
    return this.client.cached(this.name, JSON.stringify(key)) as T | undefined;
  }

  onInsert(f: (row: T) => void): () => void {
    return this.client.onEvent((e) => {
      if (e.kind === "insert" && e.table === this.name) f(e.row as T);
    });
  }

  onUpdate(f: (old: T, row: T) => void): () => void {
    return this.client.onEvent((e) => {
      if (e.kind === "update" && e.table === this.name) f(e.old as T, e.row as T);
    });
  }

  onDelete(f: (row: T) => void): () => void {
    return this.client.onEvent((e) => {
      if (e.kind === "delete" && e.table === this.name) f(e.row as T);
    });
  }
}

/** A subscription of this client; it keeps its number across
 * reconnections. */
export class Subscription {
  constructor(
    private readonly client: Client,
    readonly id: number,
  ) {}

  unsubscribe(): Promise<void> {
    return this.client.unsubscribe(this.id);
  }
}

type Socket = {
  send(text: string): void;
  close(code?: number, reason?: string): void;
  onmessage: ((e: { data: unknown }) => void) | null;
  onclose: ((e: { code: number; reason: string }) => void) | null;
  onerror: ((e: unknown) => void) | null;
  onopen: (() => void) | null;
  readyState: number;
};

/** Opens a socket and waits for the `identity` message. */
async function open(options: ConnectOptions, token: string | undefined): Promise<{ socket: Socket; hello: any }> {
  const WS = await webSocketClass();
  const base = options.url.replace(/\/+$/, "").replace(/^http:/, "ws:").replace(/^https:/, "wss:");
  const url = `${base}/v1/modules/${encodeURIComponent(options.module)}/connect`;
  const protocols = [PROTOCOL];
  if (token) protocols.push(`interstice.bearer.${token}`);
  return new Promise((resolve, reject) => {
    let settled = false;
    const socket: Socket = new WS(url, protocols);
    socket.onerror = () => {
      if (!settled) {
        settled = true;
        reject(new Error(`cannot connect to ${url}`));
      }
    };
    socket.onclose = (e) => {
      if (!settled) {
        settled = true;
        reject(new ClosedError(e.code, e.reason || "closed before the identity"));
      }
    };
    socket.onmessage = (e) => {
      if (settled) return;
      settled = true;
      let hello: any;
      try {
        hello = JSON.parse(String(e.data));
      } catch {
        reject(new Error(`not JSON: ${String(e.data)}`));
        return;
      }
      if (hello.type !== "identity") {
        reject(new Error(`expected identity, got ${String(e.data)}`));
        return;
      }
      if (options.schema !== undefined && hello.schema !== options.schema) {
        socket.close(1000, "schema mismatch");
        reject(new SchemaError(options.module, options.schema, hello.schema));
        return;
      }
      resolve({ socket, hello });
    };
  });
}

export class Client {
  identity = "";
  token: string | undefined;
  version = 0;
  schema = "";
  connectionId: number | null = null;
  /** The newest transaction the cache reflects. */
  txId = 0;

  private socket: Socket | null = null;
  private nextId = 1;
  private nextSub = 1;
  private readonly pending = new Map<number, Pending>();
  /** The local subscription each `subscribe` request in flight is for. */
  private readonly subscribing = new Map<number, number>();
  private readonly subs = new Map<number, LocalSub>();
  private readonly listeners = new Set<(e: ClientEvent) => void>();
  /** Requests made while disconnected, sent on the next session. */
  private queued: string[] = [];
  private closed: Error | null = null;

  private constructor(private readonly options: ConnectOptions) {
    this.token = options.token;
  }

  /** Opens a session: resolves once the server has said who the client is. */
  static async connect(options: ConnectOptions): Promise<Client> {
    const client = new Client(options);
    const { socket, hello } = await open(options, options.token);
    client.begin(socket, hello);
    return client;
  }

  private begin(socket: Socket, hello: any): void {
    this.identity = hello.identity;
    this.token = hello.token ?? this.token;
    this.version = hello.version;
    this.schema = hello.schema;
    this.connectionId = hello.connection_id ?? null;
    this.txId = Math.max(this.txId, hello.tx_id ?? 0);
    this.socket = socket;
    socket.onmessage = (e) => this.handle(String(e.data));
    socket.onerror = () => {};
    socket.onclose = (e) => this.lost(e.code, e.reason);
  }

  /** Listens to every event of the cache; returns how to stop. */
  onEvent(f: (e: ClientEvent) => void): () => void {
    this.listeners.add(f);
    return () => this.listeners.delete(f);
  }

  table<T>(name: string): Table<T> {
    return new Table<T>(this, name);
  }

  /** The cached rows of `table`, in primary-key order (as JSON text). */
  rows(table: string): Row[] {
    const out = new Map<string, Row>();
    for (const sub of this.subs.values()) {
      for (const q of sub.rows) {
        if (q.table !== table) continue;
        for (const [k, r] of q.rows) if (!out.has(k)) out.set(k, r);
      }
    }
    return [...out.keys()].sort().map((k) => out.get(k)!);
  }

  /** @internal The row of `table` under `key` (JSON text) the cache shows. */
  cached(table: string, key: string): Row | undefined {
    for (const sub of this.subs.values()) {
      for (const q of sub.rows) {
        if (q.table === table && q.rows.has(key)) return q.rows.get(key);
      }
    }
    return undefined;
  }

  private emit(events: ClientEvent[]): void {
    for (const e of events) for (const f of [...this.listeners]) f(e);
  }

  private change(table: string, key: string, before: Row | undefined): ClientEvent | null {
    const after = this.cached(table, key);
    if (before === undefined && after !== undefined) return { kind: "insert", table, row: after };
    if (before !== undefined && after === undefined) return { kind: "delete", table, row: before };
    if (before !== undefined && after !== undefined && JSON.stringify(before) !== JSON.stringify(after)) {
      return { kind: "update", table, old: before, row: after };
    }
    return null;
  }

  private request(message: Record<string, unknown>, local?: number): Promise<any> {
    if (this.closed) return Promise.reject(this.closed);
    const id = this.nextId++;
    const text = JSON.stringify({ ...message, id });
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      if (local !== undefined) this.subscribing.set(id, local);
      if (this.socket && this.socket.readyState === 1) this.socket.send(text);
      else this.queued.push(text);
    });
  }

  /** Calls a reducer with its arguments (an array in parameter order, or an
   * object by name). Sent at once; resolves once durable, after the cache
   * shows what it changed. Calls made one after another run in that order. */
  async call(reducer: string, args: unknown[] | Record<string, unknown> = []): Promise<CallResult> {
    const m = await this.request({ type: "call", reducer, args });
    return { txId: m.tx_id, timestamp: m.timestamp };
  }

  /** One SQL statement (docs/sql.md). */
  async query(sql: string): Promise<QueryResult> {
    const m = await this.request({ type: "query", sql });
    return { txId: m.tx_id, columns: m.columns, rows: m.rows };
  }

  /** Subscribes to queries (SQL, or a bare table name for the whole table),
   * all as of one transaction; resolves once their rows are in the cache.
   * Renewed on every reconnection. */
  async subscribe(queries: string[]): Promise<Subscription> {
    const local = this.nextSub++;
    this.subs.set(local, { queries, serverId: null, rows: [] });
    try {
      await this.request({ type: "subscribe", queries }, local);
    } catch (e) {
      this.subs.delete(local);
      throw e;
    }
    return new Subscription(this, local);
  }

  /** @internal */
  async unsubscribe(local: number): Promise<void> {
    const sub = this.subs.get(local);
    if (!sub) throw new ServerError("not_found", `no subscription ${local}`);
    this.subs.delete(local);
    const events: ClientEvent[] = [];
    for (const q of sub.rows) {
      for (const [k, row] of q.rows) {
        if (this.cached(q.table, k) === undefined) events.push({ kind: "delete", table: q.table, row });
      }
    }
    this.emit(events);
    if (sub.serverId !== null) await this.request({ type: "unsubscribe", subscription: sub.serverId });
  }

  /** Ends the session. */
  close(): void {
    this.closed = new ClosedError(1000, "closed by the client");
    this.failPending(this.closed);
    this.socket?.close(1000, "closed by the client");
  }

  private failPending(e: Error): void {
    for (const p of this.pending.values()) p.reject(e);
    this.pending.clear();
    this.subscribing.clear();
  }

  private handle(text: string): void {
    let m: any;
    try {
      m = JSON.parse(text);
    } catch {
      return;
    }
    const events: ClientEvent[] = [];
    switch (m.type) {
      case "tx": {
        for (const u of m.updates ?? []) {
          const sub = [...this.subs.values()].find((s) => s.serverId === u.subscription);
          const q = sub?.rows[u.query];
          if (!q) continue;
          for (const c of u.changes ?? []) {
            const key = keyOf(c.row, q.key);
            const before = this.cached(q.table, key);
            if (c.op === "delete") q.rows.delete(key);
            else q.rows.set(key, c.row);
            const e = this.change(q.table, key, before);
            if (e) events.push(e);
          }
        }
        this.txId = Math.max(this.txId, m.tx_id);
        events.push({ kind: "transaction", txId: m.tx_id, reducer: m.reducer });
        break;
      }
      case "subscribed": {
        const local = this.subscribing.get(m.id);
        this.subscribing.delete(m.id);
        const sub = local === undefined ? undefined : this.subs.get(local);
        if (sub) {
          const fresh: QueryRows[] = (m.queries ?? []).map((q: any) => ({
            table: q.table,
            key: q.key,
            rows: new Map((q.rows ?? []).map((r: Row) => [keyOf(r, q.key), r])),
          }));
          const touched = new Map<string, [string, string]>();
          for (const q of [...sub.rows, ...fresh]) {
            for (const k of q.rows.keys()) touched.set(`${q.table}\u0000${k}`, [q.table, k]);
          }
          const before = [...touched.values()].map(([t, k]) => this.cached(t, k));
          sub.rows = fresh;
          sub.serverId = m.subscription;
          [...touched.values()].forEach(([t, k], i) => {
            const e = this.change(t, k, before[i]);
            if (e) events.push(e);
          });
          this.txId = Math.max(this.txId, m.tx_id);
        }
        this.answer(m.id, m);
        break;
      }
      case "error": {
        if (m.id !== null && m.id !== undefined) {
          this.subscribing.delete(m.id);
          const p = this.pending.get(m.id);
          this.pending.delete(m.id);
          p?.reject(new ServerError(m.code, m.message, m.field));
        }
        break;
      }
      case "closed":
        break;
      default: {
        // A call's result and a query's answer come after every change of
        // the transactions before theirs: the cache is as of them.
        if (typeof m.tx_id === "number") this.txId = Math.max(this.txId, m.tx_id);
        this.answer(m.id, m);
      }
    }
    this.emit(events);
  }

  private answer(id: number, m: unknown): void {
    const p = this.pending.get(id);
    this.pending.delete(id);
    p?.resolve(m);
  }

  private lost(code: number, reason: string): void {
    this.socket = null;
    for (const s of this.subs.values()) s.serverId = null;
    if (this.closed) return;
    const final = code === 1000 || this.options.reconnect === false;
    const error = final ? new ClosedError(code, reason) : new DisconnectedError();
    this.failPending(error);
    if (final) {
      this.closed = error;
      return;
    }
    this.emit([{ kind: "disconnected" }]);
    void this.reconnect();
  }

  private async reconnect(): Promise<void> {
    let backoff = 50;
    for (;;) {
      await new Promise((r) => setTimeout(r, backoff));
      if (this.closed) return;
      try {
        const { socket, hello } = await open(this.options, this.token);
        this.begin(socket, hello);
        break;
      } catch (e) {
        if (e instanceof SchemaError) {
          this.closed = e;
          return;
        }
        backoff = Math.min(backoff * 2, 2000);
      }
    }
    for (const [local, sub] of this.subs) {
      const id = this.nextId++;
      this.subscribing.set(id, local);
      this.socket!.send(JSON.stringify({ type: "subscribe", id, queries: sub.queries }));
    }
    const queued = this.queued;
    this.queued = [];
    for (const text of queued) this.socket!.send(text);
    this.emit([{ kind: "reconnected" }]);
  }
}
