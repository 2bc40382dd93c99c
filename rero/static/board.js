// The live board: one WebSocket to /slot-booking, no framework, no build step.
// The server decides everything; this page shows its answers and never keeps a password.
"use strict";

// Which server: this one, or one its operator lists in board_servers (never one named by
// a link). Each server has its own session, so a token only ever goes back to its issuer.
const CHOICE_KEY = "rero.board-server";
const SESSION_PREFIX = "rero.session:";
const FRIENDLY = [
  [/^Authentication failed/, "Wrong username or password."],
  [/^Authentication service unavailable/,
    "The PESU sign-in service is unavailable right now. Try again in a minute."],
  [/^Invalid or expired session/, "Your session has ended. Please sign in again."],
];

const $ = (id) => document.getElementById(id);
// An older page kept any ?server= here, and one session for it: neither is trusted.
localStorage.removeItem("rero.server");
localStorage.removeItem("rero.session");
const configured = JSON.parse(
  document.querySelector('meta[name="rero-board-servers"]').content);
const servers = [location.origin, ...configured.filter((o) => o !== location.origin)];
const asked = new URLSearchParams(location.search).get("server");
const chosen = [asked, localStorage.getItem(CHOICE_KEY)].find((o) => servers.includes(o))
  || location.origin; // ?server= may pick a listed server; it never adds one
if (chosen === location.origin) localStorage.removeItem(CHOICE_KEY);
else localStorage.setItem(CHOICE_KEY, chosen);
const base = new URL(chosen);
const socketUrl = `${base.protocol === "https:" ? "wss:" : "ws:"}//${base.host}/slot-booking`;
const SESSION_KEY = SESSION_PREFIX + base.origin;

let socket = null;
let retries = 0;
let board = null;
let session = loadSession();
let signingIn = false;
let myBookings = [];

function loadSession() {
  try {
    const saved = JSON.parse(localStorage.getItem(SESSION_KEY));
    if (saved && saved.token && new Date(saved.expires_at) > new Date()) return saved;
  } catch (e) { /* unreadable: treated as signed out */ }
  localStorage.removeItem(SESSION_KEY);
  return null;
}

function setSession(value) {
  session = value;
  if (value) localStorage.setItem(SESSION_KEY, JSON.stringify(value));
  else localStorage.removeItem(SESSION_KEY);
  renderAccount();
  render();
}

function say(text, ok = false) {
  const box = $("message");
  box.textContent = text;
  box.classList.toggle("ok", ok);
  box.hidden = !text;
}

function friendly(message) {
  for (const [pattern, text] of FRIENDLY) if (pattern.test(message)) return text;
  return message;
}

function setStatus(state, text) {
  $("status").dataset.state = state;
  $("status-text").textContent = text;
}

function send(message) {
  if (socket && socket.readyState === WebSocket.OPEN) {
    socket.send(JSON.stringify(message));
    return true;
  }
  say("Not connected to the server yet; try again when the indicator shows Live.");
  return false;
}

function connect() {
  setStatus("connecting", retries ? "Reconnecting…" : "Connecting…");
  socket = new WebSocket(socketUrl);
  socket.onopen = () => {
    retries = 0;
    setStatus("live", "Live");
    send({ type: "get_slots" }); // re-read the board: changes made while away
    if (session) send({ type: "authenticate", token: session.token });
  };
  socket.onmessage = (event) => {
    try { receive(JSON.parse(event.data)); } catch (e) { console.error(e); }
  };
  socket.onclose = () => {
    socket = null;
    signingIn = false;
    // Exponential backoff with jitter, 0.5 s doubling up to 15 s.
    const delay = Math.min(15000, 500 * 2 ** retries) * (0.5 + Math.random() / 2);
    retries += 1;
    setStatus("offline", `Offline, retrying in ${Math.ceil(delay / 1000)} s`);
    setTimeout(connect, delay);
  };
}

function receive(msg) {
  switch (msg.type) {
    case "slots_update": return showBoard(msg.data);
    case "auth_response": return authenticated(msg);
    case "booking_response":
    case "cancellation_response":
      if (msg.success) say(msg.message, true);
      else failed(msg.message);
      return;
    case "logout_response": return;
    case "error": return say(msg.message);
  }
}

function failed(message) {
  say(friendly(message));
  if (/^Invalid or expired session/.test(message)) setSession(null);
}

function authenticated(msg) {
  const fresh = signingIn;
  signingIn = false;
  $("signin-button").disabled = false;
  if (!msg.success) {
    failed(msg.message);
    return;
  }
  if (fresh) {
    setSession({ token: msg.token, expires_at: msg.expires_at, user: msg.user });
    say(`Signed in as ${msg.user.name || msg.user.srn}.`, true);
  }
}

function label(slot) {
  return `${slot.start_time}–${slot.end_time}`;
}

function stateOf(slot) {
  if (!slot.is_booked) return "free";
  if (session && slot.booked_by === session.user.srn) return "mine";
  if (session && slot.booked_by === null && myBookings.includes(slot.id)) return "mine";
  return "taken";
}

function showBoard(data) {
  const before = board;
  board = data;
  if (before) {
    const was = new Map(before.slots.map((s) => [s.id, s.is_booked]));
    const changed = data.slots.filter((s) => was.has(s.id) && was.get(s.id) !== s.is_booked);
    if (changed.length) {
      $("announce").textContent = changed
        .map((s) => `Slot ${label(s)} is now ${s.is_booked ? "booked" : "free"}.`).join(" ");
    }
  }
  const booked = new Set(data.slots.filter((s) => s.is_booked).map((s) => s.id));
  myBookings = myBookings.filter((id) => booked.has(id));
  if (session && data.slots.some((s) => s.is_booked && s.booked_by === null)) {
    fetchMyBookings(); // this server hides who booked what: ask it for ours
  }
  render();
}

async function fetchMyBookings() {
  try {
    const resp = await fetch(new URL("/my-bookings", base), {
      method: "POST", headers: { Authorization: `Bearer ${session.token}` },
    });
    if (resp.ok) {
      myBookings = (await resp.json()).bookings.map((b) => b.id);
      render();
    }
  } catch (e) { /* the board still shows; "yours" is filled in on the next update */ }
}

function render() {
  const list = $("slots");
  if (!board) return;
  if (list.children.length !== board.slots.length) {
    list.replaceChildren(...board.slots.map(() => {
      const item = document.createElement("li");
      item.className = "slot";
      item.innerHTML = '<span class="time"></span><span class="state"></span><button type="button"></button>';
      return item;
    }));
  }
  board.slots.forEach((slot, i) => {
    const item = list.children[i];
    const state = stateOf(slot);
    item.dataset.slot = slot.id;
    item.dataset.state = state;
    item.querySelector(".time").textContent = label(slot);
    item.querySelector(".state").textContent =
      { free: "Free", mine: "Booked by you", taken: "Booked" }[state];
    const button = item.querySelector("button");
    button.textContent = state === "mine" ? "Cancel" : "Book";
    button.setAttribute("aria-label", `${button.textContent} ${label(slot)}` +
      (state === "taken" ? " (booked by someone else)" : ""));
    button.onclick = () => act(slot, state);
  });
  const mine = board.slots.filter((s) => stateOf(s) === "mine");
  $("mine").replaceChildren(...(mine.length ? mine : [null]).map((s) => {
    const item = document.createElement("li");
    item.textContent = s ? `Slot ${s.id}: ${label(s)}` : (session ? "None yet." : "Sign in to see them.");
    return item;
  }));
}

function act(slot, state) {
  if (!session) {
    say("Sign in to book a slot.");
    $("username").focus();
    return;
  }
  const type = state === "mine" ? "cancel_slot" : "book_slot";
  send({ type, slot_id: slot.id, token: session.token });
}

function renderAccount() {
  $("signin").hidden = Boolean(session);
  $("signed-in").hidden = !session;
  if (session) $("who").textContent = session.user.name || session.user.srn;
}

$("signin").addEventListener("submit", (event) => {
  event.preventDefault();
  const username = $("username").value.trim();
  const password = $("password").value;
  $("password").value = ""; // never kept, not even in the form
  if (!username || !password) return say("Enter your username and password.");
  if (send({ type: "authenticate", username, password })) {
    signingIn = true;
    $("signin-button").disabled = true;
    say("");
  }
});

$("signout").addEventListener("click", async () => {
  const token = session && session.token;
  send({ type: "logout" });
  setSession(null);
  myBookings = [];
  say("Signed out.", true);
  if (token) {
    try {
      await fetch(new URL("/auth/logout", base), {
        method: "POST", headers: { Authorization: `Bearer ${token}` },
      });
    } catch (e) { /* the token expires on its own */ }
  }
  $("username").focus();
});

function renderChooser() {
  const select = $("server");
  select.replaceChildren(...servers.map((origin) => {
    const option = document.createElement("option");
    option.value = origin;
    option.textContent = origin === location.origin ? "This server" : origin;
    return option;
  }));
  select.value = chosen;
  $("server-choice").hidden = servers.length < 2;
  select.addEventListener("change", () => {
    localStorage.setItem(CHOICE_KEY, select.value);
    location.assign(location.pathname); // start afresh on that server, without ?server=
  });
}

$("help-toggle").addEventListener("click", () => {
  const help = $("help");
  help.hidden = !help.hidden;
  $("help-toggle").setAttribute("aria-expanded", String(!help.hidden));
});

renderChooser();
renderAccount();
connect();
