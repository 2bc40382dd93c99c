// The live calendar: resources, a strip of dates, the slots of one (resource, date) kept
// live over one WebSocket to /slot-booking, and the student's own bookings. No framework,
// no build step. The server decides everything; this page shows its answers and never
// keeps a password.
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
const HOUR = 3600 * 1000;

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
let opened = false; // the socket was open once: a later open is a reconnection
let session = loadSession();
let signingIn = false;
let resources = []; // GET /resources, each with its booking window
let shown = null; // {resource, date}: what the page shows, kept in the URL's #fragment
let subscribed = null; // what this socket is subscribed to
let board = null; // the shown board, as GET /resources/{id}/slots answers it
let boardSeq = 0; // counts boards received, so an older HTTP read never replaces a newer one
let mineKey = null; // which booked slots of the shown board may be ours, at the last read
let mine = []; // our upcoming bookings, across dates and resources (GET /me/bookings)
let mineSeq = 0;
let rereadTimer = null;
let rereadAttempts = 0; // re-reads since the last moment passed

// ---- time: the lab's wall clock from the server's ISO strings, the viewer's via Intl ----

function addDays(date, days) {
  const [y, m, d] = date.split("-").map(Number);
  return new Date(Date.UTC(y, m - 1, d + days)).toISOString().slice(0, 10);
}

const DAY_FORMAT = new Intl.DateTimeFormat(undefined,
  { weekday: "short", day: "numeric", month: "short", timeZone: "UTC" });
const LOCAL_TIME = new Intl.DateTimeFormat(undefined,
  { hour: "2-digit", minute: "2-digit", hourCycle: "h23" });
const LOCAL_DAY = new Intl.DateTimeFormat(undefined, { weekday: "short" });
const VIEWER_ZONE = Intl.DateTimeFormat().resolvedOptions().timeZone;

function dayLabel(date) {
  const [y, m, d] = date.split("-").map(Number);
  return DAY_FORMAT.format(new Date(Date.UTC(y, m - 1, d)));
}

const labTime = (instant) => instant.slice(11, 16); // the lab's local time, as sent
const labSpan = (slot) => `${labTime(slot.start)}\u2013${labTime(slot.end)}`;

function offsetOf(instant) {
  const m = /([+-])(\d\d):(\d\d)$/.exec(instant);
  return m ? (m[1] === "-" ? -1 : 1) * (60 * Number(m[2]) + Number(m[3])) : 0;
}

/** True when the viewer's clock reads differently from the lab's at ``instant``. */
const viewerDiffers = (instant) =>
  offsetOf(instant) !== -new Date(instant).getTimezoneOffset();

function viewerSpan(slot) {
  const start = new Date(slot.start);
  const day = start.toLocaleDateString("en-CA") === slot.start.slice(0, 10)
    ? "" : `${LOCAL_DAY.format(start)} `;
  return `${day}${LOCAL_TIME.format(start)}\u2013${LOCAL_TIME.format(new Date(slot.end))}`;
}

function zoneName(zone, instant) {
  try {
    const parts = new Intl.DateTimeFormat("en", { timeZone: zone, timeZoneName: "short" })
      .formatToParts(new Date(instant));
    return `${zone} (${parts.find((p) => p.type === "timeZoneName").value})`;
  } catch (e) {
    return zone; // a zone this browser does not know
  }
}

/** When a day opens, in the lab's zone, and in the viewer's when that differs. */
function opensText(instant, zone) {
  let text = `${labTime(instant)} on ${dayLabel(instant.slice(0, 10))} (${zone})`;
  if (viewerDiffers(instant)) {
    const at = new Date(instant);
    text += `, ${LOCAL_TIME.format(at)} on ${LOCAL_DAY.format(at)} your time`;
  }
  return text;
}

// ---- account ---------------------------------------------------------------------------

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
  if (!value) mine = [];
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

function failed(message) {
  say(friendly(message));
  if (/^Invalid or expired session/.test(message)) setSession(null);
}

function setStatus(state, text) {
  $("status").dataset.state = state;
  $("status-text").textContent = text;
}

// ---- the server: HTTP for reads and bookings, the socket for live boards ---------------

/** One HTTP call to the chosen server, with our token; never throws. */
async function api(method, path, body) {
  const headers = {};
  if (session) headers.Authorization = `Bearer ${session.token}`;
  if (body) headers["Content-Type"] = "application/json";
  try {
    const resp = await fetch(new URL(path, base),
      { method, headers, body: body && JSON.stringify(body) });
    let data = null;
    try { data = await resp.json(); } catch (e) { /* no JSON body */ }
    return { ok: resp.ok, status: resp.status, data };
  } catch (e) {
    return { ok: false, status: 0, data: { detail: "Could not reach the server; try again." } };
  }
}

/** The server's refusal as one sentence (a 422 names each bad field). */
function detail(data) {
  const value = data && data.detail;
  if (typeof value === "string") return value;
  if (value && typeof value === "object") {
    return Object.entries(value).map(([k, v]) => `${k}: ${[].concat(v).join(" ")}`).join("; ");
  }
  return "The server refused; try again.";
}

function send(message) {
  if (socket && socket.readyState === WebSocket.OPEN) {
    socket.send(JSON.stringify(message));
    return true;
  }
  return false;
}

function connect() {
  setStatus("connecting", retries ? "Reconnecting…" : "Connecting…");
  socket = new WebSocket(socketUrl);
  socket.onopen = () => {
    retries = 0;
    setStatus("live", "Live");
    if (session) send({ type: "authenticate", token: session.token });
    subscribe(); // the server forgot us: re-read the board, changes made while away
    if (opened || !resources.length) loadResources();
    if (session) fetchMine();
    opened = true;
  };
  socket.onmessage = (event) => {
    try { receive(JSON.parse(event.data)); } catch (e) { console.error(e); }
  };
  socket.onclose = () => {
    socket = null;
    subscribed = null;
    signingIn = false;
    $("signin-button").disabled = false;
    // Exponential backoff with jitter, 0.5 s doubling up to 15 s.
    const delay = Math.min(15000, 500 * 2 ** retries) * (0.5 + Math.random() / 2);
    retries += 1;
    setStatus("offline", `Offline, retrying in ${Math.ceil(delay / 1000)} s`);
    setTimeout(connect, delay);
  };
}

/** Follow the shown (resource, date) on the socket, and only that one. */
function subscribe() {
  if (!shown || !socket || socket.readyState !== WebSocket.OPEN) return;
  if (subscribed && subscribed.resource === shown.resource && subscribed.date === shown.date) {
    return;
  }
  if (subscribed) send({ type: "unsubscribe", ...subscribed });
  subscribed = { ...shown };
  send({ type: "subscribe", ...subscribed });
}

function receive(msg) {
  switch (msg.type) {
    case "slots_update":
      // The rolling board (no resource) is the original clients'; this page follows one.
      if (shown && msg.resource === shown.resource && msg.date === shown.date) {
        showBoard(msg.data);
      }
      return;
    case "auth_response": return authenticated(msg);
    case "error": return say(msg.message);
  }
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
    fetchMine();
  }
}

// ---- resources, their windows, and the day that opens while the page is open ------------

const resourceOf = (id) => resources.find((r) => r.id === id);

/** The strip: today to the window's end, then the next day, not yet open. */
function datesOf(resource) {
  const { first_date: first, last_date: last } = resource.window;
  const dates = [];
  for (let d = first; d <= last; d = addDays(d, 1)) dates.push(d);
  dates.push(addDays(last, 1));
  return dates;
}

async function loadResources() {
  const { ok, status, data } = await api("GET", "/resources");
  if (status === 404) say("This server runs an older rero, without the calendar this page shows.");
  if (!ok) return false;
  resources = data.resources;
  const wanted = shown || fromFragment();
  const resource = (wanted && resourceOf(wanted.resource))
    || resources.find((r) => r.default) || resources[0];
  if (resource) {
    const dates = datesOf(resource);
    show(resource.id, wanted && dates.includes(wanted.date) ? wanted.date : dates[0]);
  }
  renderNav();
  scheduleReread();
  return true;
}

function fromFragment() {
  const m = /^#([a-z0-9-]{1,32})\/(\d{4}-\d{2}-\d{2})$/.exec(location.hash);
  return m && { resource: m[1], date: m[2] };
}

/** The instants at which what the server says changes by itself: a day opens, or the
 * lab's date turns (its midnight, with the offset the window was given in). */
function dueInstants() {
  const due = [];
  for (const r of resources) {
    const opens = r.window.next_opens_at;
    if (!opens) continue;
    due.push(Date.parse(opens));
    due.push(Date.parse(`${addDays(r.window.first_date, 1)}T00:00:00${opens.slice(19)}`));
  }
  if (board && board.opens_at) due.push(Date.parse(board.opens_at));
  return due.filter((t) => !Number.isNaN(t));
}

/** A timer for the next such instant. Once it has passed and the server has not moved
 * yet (its clock a little behind ours), ask again after 0.25 s, doubling up to 30 s. */
function scheduleReread() {
  clearTimeout(rereadTimer);
  const due = dueInstants();
  if (!due.length) return;
  const wait = Math.min(...due) - Date.now();
  if (wait > 0) rereadAttempts = 0;
  // Long waits are cut to an hour and re-checked: a sleeping laptop's timers run late.
  rereadTimer = setTimeout(wake, wait > 0 ? Math.min(wait + 50, HOUR)
    : Math.min(30000, 125 * 2 ** rereadAttempts));
}

function wake() {
  if (Math.min(...dueInstants()) <= Date.now()) reread();
  else scheduleReread();
}

/** The moment has come: read the windows and the shown board again. */
async function reread() {
  rereadAttempts += 1;
  await loadResources();
  if (board && board.opens_at && Date.parse(board.opens_at) <= Date.now()) await readBoard();
  scheduleReread();
}

/** The shown board over HTTP (offline from the socket, or at a moment it changes). */
async function readBoard() {
  if (!shown) return;
  const seq = boardSeq;
  const { resource, date } = shown;
  const { ok, data } = await api("GET",
    `/resources/${encodeURIComponent(resource)}/slots?date=${date}`);
  if (ok && seq === boardSeq && shown && shown.resource === resource && shown.date === date) {
    showBoard(data);
  }
}

document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "visible" && resources.length) wake();
});

// ---- what is shown ---------------------------------------------------------------------

function show(resource, date) {
  if (shown && shown.resource === resource && shown.date === date) return;
  shown = { resource, date };
  history.replaceState(null, "", `${location.pathname}${location.search}#${resource}/${date}`);
  board = null;
  mineKey = null;
  subscribe();
  if (!subscribed) readBoard(); // no socket yet: over HTTP, so the page shows something
  renderNav();
  render();
}

function showBoard(data) {
  const before = board;
  board = data;
  boardSeq += 1;
  if (before && before.resource === data.resource && before.date === data.date) {
    const was = new Map(before.slots.map((s) => [s.id, s.state]));
    const changed = data.slots.filter((s) => was.has(s.id) && was.get(s.id) !== s.state);
    if (changed.length) {
      $("announce").textContent = changed.map((s) => `Slot ${labSpan(s)} is now ${
        s.state === "closed" ? `closed (${s.reason})` : s.state}.`).join(" ");
    }
  }
  // Slots that may be ours (booked by us, or by someone the server does not name):
  // when that set changes, ask the server which bookings are ours.
  const key = data.slots.filter((s) => s.state === "booked"
    && (s.booked_by === null || (session && s.booked_by === session.user.srn)))
    .map((s) => s.id).join(",");
  if (session && key !== mineKey) fetchMine();
  mineKey = key;
  const resource = resourceOf(data.resource);
  if (resource && !data.opens_at && data.date > resource.window.last_date) reread();
  else scheduleReread();
  render();
}

async function fetchMine() {
  const seq = ++mineSeq;
  const { ok, status, data } = await api("GET", "/me/bookings");
  if (seq !== mineSeq || !session) return;
  if (ok) {
    mine = data.bookings.filter((b) => b.status === "booked");
    render();
  } else if (status === 401) {
    failed(detail(data));
  }
}

const mineAt = (resource, date, slotId) => mine.find(
  (b) => b.resource === resource && b.date === date && b.slot_id === slotId);

function stateOf(slot) {
  if (slot.state === "closed") return "closed";
  if (slot.state !== "booked") return "free";
  if (session && (slot.booked_by === session.user.srn
    || mineAt(board.resource, board.date, slot.id))) return "mine";
  return "taken";
}

function closedText(reason) {
  if (reason === "ended") return "Ended";
  if (reason === "not yet open") return "Not yet open";
  if (/^closed /.test(reason)) return `C${reason.slice(1)}`; // "closed on Sundays"
  return `Closed: ${reason}`;
}

function describe(booking) {
  const resource = resourceOf(booking.resource);
  return `${resource ? resource.name : booking.resource}, ${dayLabel(booking.date)}, `
    + labSpan(booking);
}

// ---- rendering -------------------------------------------------------------------------

function navButton(text, current, onclick, data) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "chip";
  button.append(...text);
  if (current) button.setAttribute("aria-current", "true");
  Object.assign(button.dataset, data);
  button.onclick = onclick;
  return button;
}

/** Rebuilds the resource tabs and the date strip, keeping the keyboard focus in place. */
function renderNav() {
  const focused = document.activeElement && document.activeElement.dataset
    ? { ...document.activeElement.dataset } : {};
  const nav = $("resources");
  nav.hidden = resources.length < 2;
  const sites = [...new Set(resources.map((r) => r.site))];
  nav.replaceChildren(...sites.map((site) => {
    const group = document.createElement("div");
    group.className = "site";
    group.setAttribute("role", "group");
    const tabs = resources.filter((r) => r.site === site).map((r) => navButton(
      [r.name], shown && shown.resource === r.id, () => chooseResource(r), { resource: r.id }));
    if (sites.length > 1) {
      const name = document.createElement("span");
      name.className = "site-name";
      name.textContent = site;
      group.setAttribute("aria-label", `Site ${site}`);
      group.append(name);
    }
    group.append(...tabs);
    return group;
  }));
  const resource = shown && resourceOf(shown.resource);
  const dates = resource ? datesOf(resource) : [];
  $("dates").replaceChildren(...dates.map((date) => {
    const open = date <= resource.window.last_date;
    const text = [date === resource.window.first_date ? `Today, ${dayLabel(date)}` : dayLabel(date)];
    if (!open && resource.window.next_opens_at) {
      const note = document.createElement("small");
      const at = resource.window.next_opens_at;
      const day = at.slice(0, 10);
      note.textContent = `opens ${labTime(at)} ${day === resource.window.first_date ? "today"
        : day === addDays(resource.window.first_date, 1) ? "tomorrow" : dayLabel(day)}`;
      text.push(note);
    }
    const button = navButton(text, shown.date === date,
      () => show(resource.id, date), { date, open: String(open) });
    if (!open && resource.window.next_opens_at) {
      button.setAttribute("aria-label", `${dayLabel(date)}, not yet open: bookings open at `
        + opensText(resource.window.next_opens_at, resource.timezone));
    }
    return button;
  }));
  const again = [...document.querySelectorAll("#resources button, #dates button")].find(
    (b) => (focused.resource && b.dataset.resource === focused.resource)
      || (focused.date && b.dataset.date === focused.date));
  if (again) again.focus();
}

function chooseResource(resource) {
  const dates = datesOf(resource);
  show(resource.id, shown && dates.includes(shown.date) ? shown.date : dates[0]);
}

function render() {
  renderMine();
  const resource = shown && resourceOf(shown.resource);
  $("slots-title").textContent = resource
    ? `${resource.name} \u00b7 ${dayLabel(shown.date)}` : "Slots";
  const list = $("slots");
  if (!board) {
    list.replaceChildren();
    $("zone").textContent = resources.length ? "Loading…" : "";
    $("opens").hidden = true;
    return;
  }
  const sample = board.slots.length ? board.slots[0].start : new Date().toISOString();
  const differs = board.slots.some((s) => viewerDiffers(s.start));
  $("zone").textContent = `Times are in ${zoneName(board.timezone, sample)}`
    + (differs ? `; yours (${VIEWER_ZONE}) are shown beside them.` : ".");
  $("opens").hidden = !board.opens_at;
  if (board.opens_at) {
    $("opens").textContent = `Bookings for ${dayLabel(board.date)} open at `
      + `${opensText(board.opens_at, board.timezone)}.`;
  }
  if (list.children.length !== board.slots.length) {
    list.replaceChildren(...board.slots.map(() => {
      const item = document.createElement("li");
      item.className = "slot";
      item.innerHTML = '<span class="time"></span><span class="local"></span>'
        + '<span class="state"></span><button type="button"></button>';
      return item;
    }));
  }
  board.slots.forEach((slot, i) => {
    const item = list.children[i];
    const state = stateOf(slot);
    item.dataset.slot = slot.id;
    item.dataset.state = state;
    item.dataset.reason = slot.reason || "";
    item.querySelector(".time").textContent = labSpan(slot);
    const local = item.querySelector(".local");
    local.hidden = !viewerDiffers(slot.start);
    local.textContent = local.hidden ? "" : `${viewerSpan(slot)} your time`;
    item.querySelector(".state").textContent = state === "closed" ? closedText(slot.reason)
      : { free: "Free", mine: "Booked by you", taken: "Booked" }[state];
    const button = item.querySelector("button");
    button.hidden = state === "closed";
    button.textContent = state === "mine" ? "Cancel" : "Book";
    button.setAttribute("aria-label", `${button.textContent} ${labSpan(slot)}` +
      (state === "taken" ? " (booked by someone else)" : ""));
    const { resource: at, date } = board;
    button.onclick = () => (state === "mine" ? cancelAt(at, date, slot.id) : book(at, date, slot));
  });
}

function renderMine() {
  const items = [...mine].sort((a, b) => Date.parse(a.start) - Date.parse(b.start));
  $("mine").replaceChildren(...(items.length ? items : [null]).map((b) => {
    const item = document.createElement("li");
    if (!b) {
      item.textContent = session ? "None yet." : "Sign in to see them.";
      return item;
    }
    item.dataset.booking = b.id;
    const what = document.createElement("span");
    what.textContent = describe(b);
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = "Cancel";
    button.setAttribute("aria-label", `Cancel ${describe(b)}`);
    button.onclick = () => cancel(b);
    item.append(what, " ", button);
    return item;
  }));
}

// ---- booking and cancelling ------------------------------------------------------------

function needSession() {
  if (session) return false;
  say("Sign in to book a slot.");
  $("username").focus();
  return true;
}

async function book(resource, date, slot) {
  if (needSession()) return;
  const { ok, data } = await api("POST", "/bookings", { resource, date, slot_id: slot.id });
  if (!ok) return failed(detail(data));
  mine = [...mine.filter((b) => b.id !== data.booking.id), data.booking];
  say(`Booked ${describe(data.booking)}.`, true);
  render();
}

async function cancelAt(resource, date, slotId) {
  if (needSession()) return;
  if (!mineAt(resource, date, slotId)) await fetchMine(); // booked by us on another page
  const booking = mineAt(resource, date, slotId);
  if (booking) await cancel(booking);
  else say("That booking is no longer yours.");
}

async function cancel(booking) {
  if (needSession()) return;
  const { ok, data } = await api("DELETE", `/bookings/${booking.id}`);
  if (!ok) {
    failed(detail(data));
    if (session) fetchMine(); // already cancelled or ended: show what is left
    return;
  }
  mine = mine.filter((b) => b.id !== booking.id);
  say(`Cancelled ${describe(booking)}.`, true);
  render();
}

// ---- the account panel and the server chooser ------------------------------------------

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
  } else {
    say("Not connected to the server yet; try again when the indicator shows Live.");
  }
});

$("signout").addEventListener("click", async () => {
  const token = session && session.token;
  send({ type: "logout" });
  setSession(null);
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
render();
loadResources();
connect();
