// The TypeScript client against real `interstice serve` processes, through
// the code `interstice generate` wrote for the bank (test/build/bank.js).
// Run by host/cli/tests/typescript.rs, which sets:
//   INTERSTICE_BIN        the `interstice` binary
//   INTERSTICE_BANK       the bank module's .wasm
//   INTERSTICE_BANK_V2    a later bank with another schema
//   INTERSTICE_SEED       the seed of the random calls (printed on failure)

import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";

import { Client, SchemaError, ServerError } from "@interstice/client";
import { connect, SCHEMA } from "./build/generated/bank.js";

const BIN = process.env.INTERSTICE_BIN;
const BANK = process.env.INTERSTICE_BANK;
const BANK_V2 = process.env.INTERSTICE_BANK_V2;
const SEED = BigInt(process.env.INTERSTICE_SEED ?? "12345");

/** Starts a server on `listen` over `dir`; resolves once it listens. */
function serve(dir, listen = "127.0.0.1:0") {
  const child = spawn(BIN, ["serve", "--listen", listen, "--data-dir", dir], {
    stdio: ["ignore", "pipe", "inherit"],
    env: { ...process.env, INTERSTICE_ADMIN_TOKEN: "" },
  });
  return new Promise((resolve, reject) => {
    const lines = createInterface({ input: child.stdout });
    lines.once("line", (line) => {
      const url = line.replace("listening on ", "").trim();
      const token = readFileSync(join(dir, "admin-token"), "utf8").trim();
      resolve({ child, url, token });
    });
    child.once("exit", (code) => reject(new Error(`the server exited: ${code}`)));
  });
}

async function stop(server, signal = "SIGTERM") {
  const exited = new Promise((r) => server.child.once("exit", r));
  server.child.kill(signal);
  await exited;
}

async function publish(server, name, wasm) {
  const r = await fetch(`${server.url}/v1/modules/${name}`, {
    method: "PUT",
    headers: { authorization: `Bearer ${server.token}` },
    body: readFileSync(wasm),
  });
  assert.ok(r.status === 200 || r.status === 201, `publish ${name}: ${r.status} ${await r.text()}`);
}

/** A xorshift generator: the same seed, the same calls. */
function rng(seed) {
  let x = seed || 1n;
  return () => {
    x ^= (x << 13n) & 0xffffffffffffffffn;
    x ^= x >> 7n;
    x ^= (x << 17n) & 0xffffffffffffffffn;
    return Number(x % 1000000007n);
  };
}

function accountsOf(rows) {
  return Object.fromEntries(rows.map((r) => [r.id, r.balance]));
}

async function fresh(client) {
  const q = await client.query("SELECT id, balance FROM accounts");
  return { txId: q.txId, table: Object.fromEntries(q.rows.map(([id, b]) => [id, b])) };
}

let dir;
let server;

test.before(async () => {
  dir = mkdtempSync(join(tmpdir(), "interstice-ts-"));
  server = await serve(join(dir, "data"));
  await publish(server, "bank", BANK);
});

test.after(async () => {
  await stop(server);
  rmSync(dir, { recursive: true, force: true });
});

test("typed calls resolve once durable, after the cache and its events show them", async () => {
  const { client, db, reducers } = await connect({ url: server.url, token: server.token });
  assert.equal(client.schema, SCHEMA);
  await client.subscribe(["accounts"]);
  const inserted = [];
  db.accounts.onInsert((row) => inserted.push(row));
  const updates = [];
  db.accounts.onUpdate((old, row) => updates.push([old.balance, row.balance]));
  const opened = await reducers.open_account(1001, 100);
  // Resolved: the insert event came first, and the cache holds the row.
  assert.deepEqual(inserted, [{ id: 1001, balance: 100 }]);
  assert.deepEqual(db.accounts.get(1001), { id: 1001, balance: 100 });
  assert.ok(client.txId >= opened.txId);
  await reducers.deposit(1001, 5);
  assert.deepEqual(updates, [[100, 105]]);
  await assert.rejects(reducers.transfer(1001, 4242, 1), (e) => {
    assert.ok(e instanceof ServerError);
    assert.equal(e.code, "reducer_failed");
    assert.match(e.message, /account 4242 does not exist/);
    return true;
  });
  await assert.rejects(client.call("open_account", ["x", 1]), (e) => e instanceof ServerError && e.code === "bad_request");
  client.close();
});

test("pipelined calls commit and resolve in the order they were made", async () => {
  const client = await Client.connect({ url: server.url, module: "bank", token: server.token });
  await client.call("open_account", [2001, 0]);
  const results = await Promise.all(Array.from({ length: 300 }, () => client.call("deposit", [2001, 1])));
  for (let i = 1; i < results.length; i++) assert.ok(results[i].txId > results[i - 1].txId, `${i}`);
  const q = await client.query("SELECT balance FROM accounts WHERE id = 2001");
  assert.deepEqual(q.rows, [[300]]);
  client.close();
});

test("several clients' caches equal a fresh query after every round of random calls", async () => {
  const clients = [];
  for (let i = 0; i < 3; i++) {
    // Anonymous: each gets an identity and a token of its own.
    const c = await Client.connect({ url: server.url, module: "bank" });
    assert.ok(c.token, "an anonymous session gets a token");
    await c.subscribe(["accounts", "SELECT * FROM accounts WHERE balance >= 50"]);
    const model = accountsOf(c.rows("accounts"));
    c.onEvent((e) => {
      if (e.kind === "insert") {
        assert.equal(model[e.row.id], undefined, "insert of a held row");
        model[e.row.id] = e.row.balance;
      } else if (e.kind === "update") {
        assert.equal(model[e.row.id], e.old.balance, "the old row is the held one");
        model[e.row.id] = e.row.balance;
      } else if (e.kind === "delete") {
        delete model[e.row.id];
      }
    });
    clients.push({ c, model });
  }
  assert.equal(new Set(clients.map(({ c }) => c.identity)).size, 3);
  const next = rng(SEED);
  for (let round = 0; round < 10; round++) {
    const calls = [];
    for (const { c } of clients) {
      for (let k = 0; k < 15; k++) {
        const a = 3000 + (next() % 8);
        const b = 3000 + (next() % 8);
        const amount = next() % 120;
        const which = next() % 4;
        const [reducer, args] =
          which === 0 ? ["open_account", [a, amount]] : which === 1 ? ["deposit", [a, amount]] : ["transfer", [a, b, amount]];
        calls.push(
          c.call(reducer, args).catch((e) => {
            assert.equal(e.code, "reducer_failed", `seed ${SEED} round ${round}: ${e}`);
          }),
        );
      }
    }
    await Promise.all(calls);
    for (const { c, model } of clients) {
      // The answer comes after every change before its transaction.
      const { txId, table } = await fresh(c);
      assert.ok(c.txId >= txId);
      assert.deepEqual(accountsOf(c.rows("accounts")), table, `seed ${SEED} round ${round}: the cache is the table`);
      assert.deepEqual(model, table, `seed ${SEED} round ${round}: the events tell the cache`);
    }
  }
  for (const { c } of clients) c.close();
});

test("a client generated for another schema is told so on connect", async () => {
  const own = mkdtempSync(join(tmpdir(), "interstice-ts-v2-"));
  const other = await serve(join(own, "data"));
  try {
    await publish(other, "bank", BANK_V2);
    await assert.rejects(connect({ url: other.url, token: other.token }), (e) => {
      assert.ok(e instanceof SchemaError, `${e}`);
      assert.equal(e.expected, SCHEMA);
      assert.notEqual(e.found, SCHEMA);
      assert.match(e.message, /generate it again/);
      return true;
    });
  } finally {
    await stop(other);
    rmSync(own, { recursive: true, force: true });
  }
});

test("after a kill -9 the client reconnects as the same identity, resubscribes and catches up", async () => {
  const own = mkdtempSync(join(tmpdir(), "interstice-ts-kill-"));
  const data = join(own, "data");
  let first = await serve(data);
  const listen = first.url.replace("http://", "");
  try {
    await publish(first, "bank", BANK);
    const { client, db, reducers } = await connect({ url: first.url });
    const identity = client.identity;
    await client.subscribe(["accounts"]);
    for (let i = 0; i < 3; i++) await reducers.open_account(i, 10);
    const events = [];
    client.onEvent((e) => events.push(e));
    await stop(first, "SIGKILL");
    while (!events.some((e) => e.kind === "disconnected")) await new Promise((r) => setTimeout(r, 10));
    // Made while the server is down: it runs on the next session.
    const waiting = reducers.deposit(0, 5);
    first = await serve(data, listen);
    const other = await Client.connect({ url: first.url, module: "bank", token: first.token });
    await other.call("open_account", [7, 70]);
    await other.call("transfer", [1, 2, 4]);
    const done = await waiting;
    assert.ok(client.txId >= done.txId);
    assert.equal(client.identity, identity, "the same identity, by the issued token");
    const { table } = await fresh(client);
    assert.deepEqual(table, { 0: 15, 1: 6, 2: 14, 7: 70 });
    assert.deepEqual(accountsOf(db.accounts.rows()), table, "the cache is the server's state");
    assert.ok(events.some((e) => e.kind === "reconnected"));
    assert.ok(events.some((e) => e.kind === "insert" && e.row.id === 7 && e.row.balance === 70));
    const zero = events.filter((e) => e.kind === "update" && e.row.id === 0).map((e) => e.row.balance);
    assert.deepEqual(zero, [15]);
    client.close();
    other.close();
  } finally {
    await stop(first);
    rmSync(own, { recursive: true, force: true });
  }
});
