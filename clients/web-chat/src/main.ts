// The chat page: the chatroom module's generated client, a subscription to
// its two tables, and the page drawn from the live cache on every change.
// The session's token is kept in localStorage, so a reload comes back as
// the same identity (and the same name).

import { connect, type Message, type Person } from "./generated/chatroom.js";

const TOKEN_KEY = "interstice.chatroom.token";

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const status = $("status");
const join = $<HTMLFormElement>("join");
const room = $("room");
const messages = $<HTMLOListElement>("messages");
const say = $<HTMLFormElement>("say");
const text = $<HTMLInputElement>("text");
const nameInput = $<HTMLInputElement>("name");
const error = $("error");

function setStatus(state: "connecting" | "online" | "offline", label: string) {
  status.dataset.state = state;
  status.textContent = label;
}

function showError(e: unknown) {
  error.textContent = e instanceof Error ? e.message : String(e);
}

async function main() {
  const stored = localStorage.getItem(TOKEN_KEY) ?? undefined;
  const { client, db, reducers } = await connect({ url: location.origin, token: stored });
  if (client.token) localStorage.setItem(TOKEN_KEY, client.token);
  setStatus("online", "online");
  await client.subscribe(["person", "message"]);

  let scheduled = false;
  const render = () => {
    if (scheduled) return;
    scheduled = true;
    requestAnimationFrame(() => {
      scheduled = false;
      draw();
    });
  };

  function draw() {
    const people = new Map<string, Person>(db.person.rows().map((p) => [p.identity, p]));
    const me = people.get(client.identity);
    join.hidden = me !== undefined;
    room.hidden = me === undefined;
    $("me").textContent = me ? `You are ${me.name}.` : "";
    const rows = db.message.rows().sort((a: Message, b: Message) => a.id - b.id);
    messages.replaceChildren(
      ...rows.map((m) => {
        const li = document.createElement("li");
        li.dataset.id = String(m.id);
        const who = document.createElement("span");
        const sender = people.get(m.sender);
        who.className = sender?.online ? "who online" : "who";
        who.textContent = sender?.name ?? m.sender.slice(0, 8);
        const body = document.createElement("span");
        body.className = "text";
        body.textContent = m.text;
        li.append(who, body);
        return li;
      }),
    );
  }

  client.onEvent((e) => {
    if (e.kind === "disconnected") setStatus("offline", "reconnecting…");
    else if (e.kind === "reconnected") setStatus("online", "online");
    else render();
  });
  draw();

  join.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    error.textContent = "";
    try {
      await reducers.set_name(nameInput.value);
    } catch (e) {
      showError(e);
    }
  });
  say.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    error.textContent = "";
    const value = text.value;
    text.value = "";
    try {
      await reducers.send(value);
    } catch (e) {
      text.value = value;
      showError(e);
    }
  });
}

main().catch((e) => {
  setStatus("offline", "offline");
  showError(e);
});
