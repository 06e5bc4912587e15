// The chat page in a real browser (Debian's chromium, driven by
// playwright-core) against a real `interstice serve --static dist`. Run by
// host/cli/tests/web_chat.rs, which sets:
//   INTERSTICE_BIN       the `interstice` binary
//   INTERSTICE_CHATROOM  the chatroom module's .wasm
//   CHROMIUM             the browser (default /usr/bin/chromium)
//   SCREENSHOT           where to save a picture of the page (optional)

import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";

import { chromium } from "playwright-core";

const BIN = process.env.INTERSTICE_BIN;
const CHATROOM = process.env.INTERSTICE_CHATROOM;
const DIST = resolve("dist");

function serve(dir, listen = "127.0.0.1:0") {
  const child = spawn(BIN, ["serve", "--listen", listen, "--data-dir", dir, "--static", DIST], {
    stdio: ["ignore", "pipe", "inherit"],
    env: { ...process.env, INTERSTICE_ADMIN_TOKEN: "" },
  });
  return new Promise((resolve, reject) => {
    createInterface({ input: child.stdout }).once("line", (line) => {
      const url = line.replace("listening on ", "").trim();
      resolve({ child, url, token: readFileSync(join(dir, "admin-token"), "utf8").trim() });
    });
    child.once("exit", (code) => reject(new Error(`the server exited: ${code}`)));
  });
}

async function stop(server, signal) {
  const exited = new Promise((r) => server.child.once("exit", r));
  server.child.kill(signal);
  await exited;
}

/** The messages a page shows, as "name: text". */
async function shown(page) {
  return page.$$eval("#messages li", (items) =>
    items.map((li) => `${li.querySelector(".who").textContent}: ${li.querySelector(".text").textContent}`),
  );
}

async function waitShown(page, line) {
  await page.waitForFunction(
    (line) =>
      [...document.querySelectorAll("#messages li")].some(
        (li) => `${li.querySelector(".who").textContent}: ${li.querySelector(".text").textContent}` === line,
      ),
    line,
    { timeout: 20000 },
  );
}

async function joinAs(page, url, name) {
  await page.goto(url);
  await page.waitForSelector("#join", { state: "visible" });
  await page.waitForSelector("#room", { state: "hidden" });
  await page.fill("#name", name);
  await page.click("#join button");
  await page.waitForSelector("#room", { state: "visible" });
  await page.waitForSelector("#join", { state: "hidden" });
  assert.equal(await page.textContent("#me"), `You are ${name}.`);
}

async function say(page, text, name) {
  await page.fill("#text", text);
  await page.click("#say button");
  await waitShown(page, `${name}: ${text}`);
}

test("two people chat live; a reload keeps history and identity; a kill -9 loses nothing shown", async () => {
  const dir = mkdtempSync(join(tmpdir(), "interstice-web-"));
  const data = join(dir, "data");
  let server = await serve(data);
  const listen = server.url.replace("http://", "");
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox"],
  });
  try {
    const r = await fetch(`${server.url}/v1/modules/chatroom`, {
      method: "PUT",
      headers: { authorization: `Bearer ${server.token}` },
      body: readFileSync(CHATROOM),
    });
    assert.equal(r.status, 201, await r.text());
    // Two browser contexts: two storages, two identities.
    const alice = await (await browser.newContext()).newPage();
    const bob = await (await browser.newContext()).newPage();
    await joinAs(alice, server.url, "alice");
    await joinAs(bob, server.url, "bob");
    await say(alice, "hello bob", "alice");
    // Bob sees it live, without reloading.
    await waitShown(bob, "alice: hello bob");
    await say(bob, "hi alice <b>not bold</b>", "bob");
    await waitShown(alice, "bob: hi alice <b>not bold</b>");
    assert.equal(await alice.$$eval("#messages b", (b) => b.length), 0, "text is shown as text");

    // A name that is taken is refused, with the module's reason.
    const carol = await (await browser.newContext()).newPage();
    await carol.goto(server.url);
    await carol.waitForSelector("#join", { state: "visible" });
    await carol.fill("#name", "alice");
    await carol.click("#join button");
    await carol.waitForFunction(() => document.querySelector("#error").textContent.includes("is taken"));

    // A reload keeps the history and the identity (the token is kept).
    await bob.reload();
    await bob.waitForSelector("#room", { state: "visible" });
    await bob.waitForSelector("#join", { state: "hidden" });
    assert.equal(await bob.textContent("#me"), "You are bob.");
    await waitShown(bob, "bob: hi alice <b>not bold</b>");
    const before = await shown(alice);
    assert.deepEqual(before, ["alice: hello bob", "bob: hi alice <b>not bold</b>"]);

    // The server is killed and started again on the same port: the pages
    // reconnect, and every message they showed is still there.
    await stop(server, "SIGKILL");
    await alice.waitForFunction(() => document.querySelector("#status").dataset.state === "offline");
    server = await serve(data, listen);
    await alice.waitForFunction(() => document.querySelector("#status").dataset.state === "online", null, {
      timeout: 20000,
    });
    await bob.waitForFunction(() => document.querySelector("#status").dataset.state === "online", null, {
      timeout: 20000,
    });
    await say(alice, "still here?", "alice");
    await waitShown(bob, "alice: still here?");
    assert.deepEqual(await shown(bob), [...before, "alice: still here?"]);
    assert.deepEqual(await shown(alice), [...before, "alice: still here?"]);
    if (process.env.SCREENSHOT) await alice.screenshot({ path: process.env.SCREENSHOT });
  } finally {
    await browser.close();
    await stop(server, "SIGTERM");
    rmSync(dir, { recursive: true, force: true });
  }
});
