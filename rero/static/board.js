// The live calendar: resources, a strip of dates, the slots of one (resource, date) kept
// live over one WebSocket to /slot-booking, and the student's own bookings, holds and
// places on waitlists. No framework, no build step. The server decides everything; this
// page shows its answers (its countdowns run to the server's instants) and never keeps a
// password.
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
const MINUTE = 60 * 1000;
const LAB_EARLY = 5 * MINUTE; // "Open the lab" shows this long before a booking starts

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
let session = loadSession(SESSION_KEY);
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
let holds = []; // our live holds: made here, offered from a waitlist, or read back
let waits = []; // our places on waitlists (GET /me/waitlist, and the socket's "waitlist")
const labless = new Set(); // bookings whose resource has no lab (its access said 404)
let expiryReads = 0; // re-reads since a countdown ran out, before the server swept it
let nextExpiryRead = 0;

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

function setSession(value) {
  session = value;
  if (value) localStorage.setItem(SESSION_KEY, JSON.stringify(value));
  else localStorage.removeItem(SESSION_KEY);
  if (!value) {
    mine = [];
    holds = [];
    waits = [];
    labless.clear();
  }
  renderAccount();
  render();
}

/** A sentence in the message box; with ``link``, a link after it ({text, href}). */
function say(text, ok = false, link = null) {
  const box = $("message");
  box.textContent = text;
  if (link) {
    const a = document.createElement("a");
    a.href = link.href;
    a.target = "_blank";
    a.rel = "noopener noreferrer";
    a.textContent = link.text;
    box.append(" ", a);
  }
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
    case "hold_offered": return offered(msg.data.hold);
    case "waitlist": return waitlisted(msg.data.waitlist);
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
  // Slots that may be ours (booked or held by us, or by someone the server does not
  // name): when that set changes, ask the server which bookings and holds are ours.
  const key = data.slots.filter((s) => (s.state === "booked" || s.state === "held")
    && (s.booked_by === null || (session && s.booked_by === session.user.srn)))
    .map((s) => `${s.id}:${s.state}`).join(",");
  if (session && key !== mineKey) fetchMine();
  mineKey = key;
  const resource = resourceOf(data.resource);
  if (resource && !data.opens_at && data.date > resource.window.last_date) reread();
  else scheduleReread();
  render();
}

/** The dates a hold of ours can be on: the day before the earliest today (zones differ)
 * to the furthest end of a booking window. */
function holdDates() {
  if (!resources.length) return null;
  const firsts = resources.map((r) => r.window.first_date).sort();
  const lasts = resources.map((r) => r.window.last_date).sort();
  return [addDays(firsts[0], -1), lasts[lasts.length - 1]];
}

/** Our upcoming bookings, our holds (any date of the windows: their status is "held")
 * and our places on waitlists, read together; the server's answer replaces ours. */
async function fetchMine() {
  const seq = ++mineSeq;
  const dates = holdDates();
  const [booked, held, waiting] = await Promise.all([
    api("GET", "/me/bookings"),
    dates ? api("GET", `/me/bookings?from=${dates[0]}&to=${dates[1]}`) : null,
    api("GET", "/me/waitlist"), // a server without the hour says 404: no places
  ]);
  if (seq !== mineSeq || !session) return;
  const expired = [booked, held, waiting].find((r) => r && r.status === 401);
  if (expired) return failed(detail(expired.data));
  if (booked.ok) mine = booked.data.bookings.filter((b) => b.status === "booked");
  if (waiting.ok) waits = waiting.data.waitlist;
  if (held && held.ok) {
    const known = new Map(holds.map((h) => [h.id, h]));
    holds = held.data.bookings.filter((b) => b.status === "held").map((b) => ({
      ...b,
      expires_at: known.has(b.id) ? known.get(b.id).expires_at : null,
      offered: known.has(b.id) && known.get(b.id).offered,
    }));
  }
  noteOffers();
  render();
}

/** The socket says our places changed (a position moved, a hold was offered). */
function waitlisted(entries) {
  if (!session) return;
  waits = entries;
  noteOffers();
  render();
}

/** The first in line got the freed slot as a hold: say so, and show it to confirm. */
function offered(hold) {
  if (!session) return;
  keepHold({ ...hold, offered: true });
  const text = `A place opened up: ${describe(hold)} is held for you until `
    + `${labTime(hold.expires_at)}. Confirm it to book it.`;
  say(text, true); // the message box is an alert: said once, while the notice counts down
  render();
}

/** Holds offered to us, as our waitlist entries name them. */
function noteOffers() {
  for (const w of waits) {
    if (w.status !== "offered" || !w.hold_id) continue;
    const hold = holds.find((h) => h.id === w.hold_id);
    if (hold) Object.assign(hold, { offered: true, expires_at: hold.expires_at || w.hold_expires_at });
    else {
      holds.push({ id: w.hold_id, resource: w.resource, date: w.date, slot_id: w.slot_id,
        start: w.start, end: w.end, status: "held", expires_at: w.hold_expires_at,
        offered: true });
    }
  }
}

function keepHold(hold) {
  const before = holds.find((h) => h.id === hold.id);
  holds = [...holds.filter((h) => h.id !== hold.id),
    { ...hold, offered: hold.offered || Boolean(before && before.offered) }];
}

const findAt = (list, resource, date, slotId) => list.find(
  (b) => b.resource === resource && b.date === date && b.slot_id === slotId);
const mineAt = (resource, date, slotId) => findAt(mine, resource, date, slotId);
const holdAt = (resource, date, slotId) => findAt(holds, resource, date, slotId);
const waitAt = (resource, date, slotId) => findAt(
  waits.filter((w) => w.status === "waiting"), resource, date, slotId);

function stateOf(slot) {
  if (slot.state === "closed") return "closed";
  if (slot.state === "free") return "free";
  const { resource, date } = board;
  const ours = session && (slot.booked_by === session.user.srn
    || (slot.state === "held" ? holdAt : mineAt)(resource, date, slot.id));
  if (ours) return slot.state === "held" ? "holding" : "mine";
  if (session && waitAt(resource, date, slot.id)) return "waiting";
  return slot.state === "held" ? "held" : "taken";
}

// ---- countdowns: the server's instants against this browser's clock, once a second ------

/** Whole seconds left until ``instant`` (never below 0). */
const secondsLeft = (instant) => Math.max(0, Math.ceil((Date.parse(instant) - Date.now()) / 1000));

function countdown(instant) {
  const left = secondsLeft(instant);
  const [h, m, s] = [Math.floor(left / 3600), Math.floor((left % 3600) / 60), left % 60];
  const two = (n) => String(n).padStart(2, "0");
  return h ? `${h}:${two(m)}:${two(s)}` : `${m}:${two(s)}`;
}

/** When our hold ends: as it was given to us, else as the shown board says. */
function holdUntil(hold) {
  if (hold.expires_at) return hold.expires_at;
  const slot = board && board.resource === hold.resource && board.date === hold.date
    && board.slots.find((s) => s.id === hold.slot_id);
  return (slot && slot.held_until) || null;
}

/** Once a second: countdowns move and the lab's buttons come and go. When a countdown
 * has run out, read the board and ours again (the server's sweep frees the slot within
 * about a second: ask again after 1 s, 2 s, ... up to five times). */
function tick() {
  render();
  const now = Date.now();
  const due = [...holds.map(holdUntil),
    ...(board ? board.slots.filter((s) => s.state === "held").map((s) => s.held_until) : [])]
    .filter(Boolean).map(Date.parse);
  if (!due.some((t) => t <= now)) {
    expiryReads = 0;
    return;
  }
  if (expiryReads >= 5 || now < nextExpiryRead) return;
  expiryReads += 1;
  nextExpiryRead = now + 1000 * expiryReads;
  readBoard();
  if (session) fetchMine();
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

function setText(element, text) {
  if (element.textContent !== text) element.textContent = text;
}

/** Keeps ``box``'s buttons in step with ``actions`` ({key, text, label, run, quiet}):
 * rebuilt only when which buttons change, so a tick never steals the keyboard focus
 * (and when they do change, the focus stays in the box). */
function setActions(box, actions) {
  const keys = actions.map((a) => a.key).join(" ");
  if (box.dataset.keys !== keys) {
    const focused = box.contains(document.activeElement);
    box.dataset.keys = keys;
    box.replaceChildren(...actions.map((a) => {
      const button = document.createElement("button");
      button.type = "button";
      button.dataset.action = a.key;
      return button;
    }));
    if (focused && box.firstElementChild) box.firstElementChild.focus();
  }
  actions.forEach((a, i) => {
    const button = box.children[i];
    setText(button, a.text);
    if (button.getAttribute("aria-label") !== a.label) button.setAttribute("aria-label", a.label);
    button.classList.toggle("quiet", Boolean(a.quiet));
    button.onclick = a.run;
  });
}

/** What one slot says and offers, by its state for us. */
function slotView(slot, state) {
  const { resource, date } = board;
  const span = labSpan(slot);
  const hold = holdAt(resource, date, slot.id);
  const wait = waitAt(resource, date, slot.id);
  const until = slot.held_until || (hold && holdUntil(hold));
  switch (state) {
    case "closed": return { text: closedText(slot.reason), actions: [] };
    case "free": return { text: "Free", actions: [
      { key: "book", text: "Book", label: `Book ${span}`, run: () => book(resource, date, slot) },
      { key: "hold", text: "Hold", label: `Hold ${span} for a while, then confirm it`,
        quiet: true, run: () => holdSlot(resource, date, slot) },
    ] };
    case "mine": return { text: "Booked by you", actions: [
      { key: "cancel", text: "Cancel", label: `Cancel ${span}`,
        run: () => cancelAt(resource, date, slot.id) },
    ] };
    case "holding": return {
      text: until ? `Held for you: ${countdown(until)}` : "Held for you",
      actions: [
        { key: "confirm", text: "Confirm", label: `Confirm ${span}`,
          run: () => holdThen(resource, date, slot.id, confirmHold) },
        { key: "drop", text: "Release hold", label: `Release the hold on ${span}`, quiet: true,
          run: () => holdThen(resource, date, slot.id, dropHold) },
      ],
    };
    case "waiting": return { text: `On the waitlist: #${wait.position}`, actions: [
      { key: "leave", text: "Leave", label: `Leave the waitlist for ${span}`, quiet: true,
        run: () => leave(wait) },
    ] };
    default: return { // held or booked by someone else
      text: state === "held" ? (until ? `Held: ${countdown(until)}` : "Held") : "Booked",
      actions: [{ key: "join", text: "Join waitlist", quiet: true,
        label: `Join the waitlist for ${span} (${state === "held" ? "held" : "booked"} by `
          + "someone else)", run: () => join(resource, date, slot) }],
    };
  }
}

function render() {
  renderMine();
  renderOffers();
  const resource = shown && resourceOf(shown.resource);
  setText($("slots-title"), resource ? `${resource.name} \u00b7 ${dayLabel(shown.date)}` : "Slots");
  const list = $("slots");
  if (!board) {
    list.replaceChildren();
    setText($("zone"), resources.length ? "Loading…" : "");
    $("opens").hidden = true;
    return;
  }
  const sample = board.slots.length ? board.slots[0].start : new Date().toISOString();
  const differs = board.slots.some((s) => viewerDiffers(s.start));
  setText($("zone"), `Times are in ${zoneName(board.timezone, sample)}`
    + (differs ? `; yours (${VIEWER_ZONE}) are shown beside them.` : "."));
  $("opens").hidden = !board.opens_at;
  if (board.opens_at) {
    setText($("opens"), `Bookings for ${dayLabel(board.date)} open at `
      + `${opensText(board.opens_at, board.timezone)}.`);
  }
  if (list.children.length !== board.slots.length) {
    list.replaceChildren(...board.slots.map(() => {
      const item = document.createElement("li");
      item.className = "slot";
      item.innerHTML = '<span class="time"></span><span class="local"></span>'
        + '<span class="state"></span><span class="actions"></span>';
      return item;
    }));
  }
  board.slots.forEach((slot, i) => {
    const item = list.children[i];
    const state = stateOf(slot);
    item.dataset.slot = slot.id;
    item.dataset.state = state;
    item.dataset.reason = slot.reason || "";
    setText(item.querySelector(".time"), labSpan(slot));
    const local = item.querySelector(".local");
    local.hidden = !viewerDiffers(slot.start);
    setText(local, local.hidden ? "" : `${viewerSpan(slot)} your time`);
    const view = slotView(slot, state);
    setText(item.querySelector(".state"), view.text);
    setActions(item.querySelector(".actions"), view.actions);
  });
}

/** Keeps a list's rows ({key, text, note, actions, data}) in step, rebuilding its items
 * only when which rows there are changes; ``empty`` when there are none. */
function renderRows(list, rows, empty) {
  const keys = rows.length ? rows.map((r) => r.key).join(" ") : `empty:${empty}`;
  if (list.dataset.keys !== keys) {
    const focused = document.activeElement;
    const was = list.contains(focused) && focused.dataset.action
      && [focused.closest("li").dataset.key, focused.dataset.action];
    list.dataset.keys = keys;
    list.replaceChildren(...(rows.length || !empty ? rows : [null]).map((row) => {
      const item = document.createElement("li");
      if (!row) {
        item.textContent = empty;
        return item;
      }
      item.dataset.key = row.key;
      item.innerHTML = '<span class="what"><span class="name"></span><span class="note">'
        + '</span></span> <span class="actions"></span>';
      return item;
    }));
    const again = was && list.querySelector(
      `li[data-key="${was[0]}"] button[data-action="${was[1]}"]`);
    if (again) again.focus();
  }
  rows.forEach((row, i) => {
    const item = list.children[i];
    Object.assign(item.dataset, row.data);
    setText(item.querySelector(".name"), row.text);
    const note = item.querySelector(".note");
    note.hidden = !row.note;
    setText(note, row.note || "");
    setActions(item.querySelector(".actions"), row.actions);
  });
}

/** Whether a booking is under way (or starts within LAB_EARLY), and started. */
function phase(booking) {
  const now = Date.now();
  const start = Date.parse(booking.start);
  const end = Date.parse(booking.end);
  return { near: now >= start - LAB_EARLY && now < end, started: now >= start && now < end };
}

/** Whether a resource has a lab to open (GET /resources says so in has_lab). */
function mayHaveLab(id) {
  const resource = resourceOf(id);
  return Boolean(resource && resource.has_lab);
}

function holdActions(hold, decline) {
  const what = describe(hold);
  return [
    { key: "confirm", text: "Confirm", label: `Confirm ${what}`, run: () => confirmHold(hold) },
    { key: "drop", text: decline, label: `${decline} ${what}`, quiet: true,
      run: () => dropHold(hold) },
  ];
}

function renderMine() {
  const rows = [];
  for (const b of mine) {
    const what = describe(b);
    const { near, started } = phase(b);
    const actions = [];
    if (near && !labless.has(b.id) && mayHaveLab(b.resource)) {
      actions.push({ key: "lab", text: "Open the lab", label: `Open the lab for ${what}`,
        run: () => openLab(b) });
    }
    if (started) {
      actions.push({ key: "done", text: "I'm done", label: `I'm done with ${what}: free the rest`,
        quiet: true, run: () => release(b) });
    }
    actions.push({ key: "cancel", text: "Cancel", label: `Cancel ${what}`, run: () => cancel(b),
      quiet: started });
    rows.push({ key: `b${b.id}`, start: b.start, text: what, data: { booking: b.id },
      note: started ? "Under way" : "", actions });
  }
  for (const h of holds) {
    const until = holdUntil(h);
    rows.push({ key: `h${h.id}`, start: h.start, text: describe(h), data: { hold: h.id },
      note: until ? `Held for you: ${countdown(until)}` : "Held for you",
      actions: holdActions(h, "Release hold") });
  }
  for (const w of waits.filter((e) => e.status === "waiting")) {
    rows.push({ key: `w${w.id}`, start: w.start, text: describe(w), data: { wait: w.id },
      note: `On the waitlist: #${w.position}`, actions: [{ key: "leave", text: "Leave",
        label: `Leave the waitlist for ${describe(w)}`, quiet: true, run: () => leave(w) }] });
  }
  rows.sort((a, b) => Date.parse(a.start) - Date.parse(b.start));
  renderRows($("mine"), rows, session ? "None yet." : "Sign in to see them.");
}

/** Holds offered to us from a waitlist: a notice above the page, whatever it shows. */
function renderOffers() {
  const offers = holds.filter((h) => h.offered);
  $("offers").hidden = !offers.length;
  renderRows($("offer-list"), offers.map((h) => {
    const until = holdUntil(h);
    return { key: `o${h.id}`, text: describe(h), data: { hold: h.id },
      note: until ? `Held for you: ${countdown(until)}` : "Held for you",
      actions: holdActions(h, "Decline") };
  }), "");
}

// ---- booking, holding, waiting, and the hour itself ------------------------------------

function needSession() {
  if (session) return false;
  say("Sign in to book a slot.");
  $("username").focus();
  return true;
}

/** A refusal: the server's sentence, then what is ours now. */
function refused(data) {
  failed(detail(data));
  if (session) fetchMine();
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
  if (!ok) return refused(data); // already cancelled or ended: show what is left
  mine = mine.filter((b) => b.id !== booking.id);
  say(`Cancelled ${describe(booking)}.`, true);
  render();
}

async function holdSlot(resource, date, slot) {
  if (needSession()) return;
  const { ok, data } = await api("POST", "/holds", { resource, date, slot_id: slot.id });
  if (!ok) return failed(detail(data));
  mineSeq += 1; // a read already under way may not know it yet
  keepHold(data.hold);
  say(`Held ${describe(data.hold)} for you until ${labTime(data.hold.expires_at)}: `
    + "confirm it to book it.", true);
  render();
}

/** Our hold on a slot of the shown board (made on another page: asked for first). */
async function holdThen(resource, date, slotId, action) {
  if (needSession()) return;
  if (!holdAt(resource, date, slotId)) await fetchMine();
  const hold = holdAt(resource, date, slotId);
  if (hold) await action(hold);
  else say("That hold is no longer yours.");
}

function forget(hold) {
  holds = holds.filter((h) => h.id !== hold.id);
  waits = waits.filter((w) => w.hold_id !== hold.id);
  mineSeq += 1;
}

async function confirmHold(hold) {
  const { ok, data } = await api("POST", `/holds/${hold.id}/confirm`);
  if (!ok) return refused(data);
  forget(hold);
  mine = [...mine.filter((b) => b.id !== data.booking.id), data.booking];
  say(`Booked ${describe(data.booking)}.`, true);
  render();
}

async function dropHold(hold) {
  const { ok, data } = await api("DELETE", `/holds/${hold.id}`);
  if (!ok) return refused(data);
  forget(hold);
  say(`Released the hold on ${describe(hold)}.`, true);
  render();
}

async function join(resource, date, slot) {
  if (needSession()) return;
  const { ok, data } = await api("POST", "/waitlist", { resource, date, slot_id: slot.id });
  if (!ok) return failed(detail(data));
  waits = [...waits.filter((w) => w.id !== data.entry.id), data.entry];
  say(`On the waitlist for ${describe(data.entry)}: #${data.entry.position}.`, true);
  render();
}

async function leave(entry) {
  const { ok, data } = await api("DELETE", `/waitlist/${entry.id}`);
  if (!ok) return refused(data);
  waits = waits.filter((w) => w.id !== entry.id);
  say(`Left the waitlist for ${describe(entry)}.`, true);
  render();
}

/** "I'm done": the rest of the slot goes to the waitlist, or is free to book. */
async function release(booking) {
  const { ok, data } = await api("POST", `/bookings/${booking.id}/release`);
  if (!ok) return refused(data);
  mine = mine.filter((b) => b.id !== booking.id);
  say(`Done with ${describe(booking)}: the rest of it is free for others.`, true);
  render();
}

/** A link the server gave us, if it is a web address (never ``javascript:`` and such). */
function webAddress(text) {
  try {
    const url = new URL(text);
    return url.protocol === "https:" || url.protocol === "http:" ? url.href : null;
  } catch (e) {
    return null;
  }
}

/** Ask for access to the lab (it checks us in) and open it in a new tab. */
async function openLab(booking) {
  const { ok, status, data } = await api("POST", `/bookings/${booking.id}/access`);
  if (!ok) {
    if (status === 404) labless.add(booking.id); // no lab for it (or no such route)
    failed(detail(data));
    render();
    return;
  }
  const href = webAddress(data && data.launch_url);
  if (!href) return say("The server gave no usable address for the lab.");
  window.open(href, "_blank", "noopener,noreferrer");
  // A tab the browser blocked can still be opened from here.
  say(`The lab for ${describe(booking)} opens in a new tab.`, true,
    { text: "Open it here", href });
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
setInterval(tick, 1000);
