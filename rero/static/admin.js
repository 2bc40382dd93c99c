// The staff console: a resource's board with who booked (cancel with a reason), blackouts
// on a month calendar, a student's record, the audit trail and usage analytics as charts.
// No framework, no build step; the server decides everything and this page shows its
// answers, its refusals included (a student signing in is told the API's 403).
"use strict";

// The board page's key for this server's session: one sign-in serves both pages.
const SESSION_KEY = `rero.session:${location.origin}`;
const WEEKDAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
const COLOURS = ["#0b4f9c", "#0b6e4f", "#a61b1b", "#6b4e00", "#5b2a86", "#c2410c", "#3f4753"];
const STATUS = { booked: "Booked", held: "Held", completed: "Completed", no_show: "No-show",
  cancelled: "Cancelled" };
const CHECK_IN_EARLY = 5 * 60 * 1000; // the Check in button shows this long before a slot
const FRIENDLY = [
  [/^Invalid credentials/, "Wrong username or password."],
  [/^Invalid or expired session/, "Your session has ended. Please sign in again."],
];

const $ = (id) => document.getElementById(id);
let session = loadSession(SESSION_KEY);
let role = null; // the signed-in staff member's role: "assistant" or "admin"
let resources = []; // GET /resources
let shownBoard = null; // the board shown: GET /admin/bookings's answer
let month = null; // the blackout calendar's month, "YYYY-MM"
let monthBlackouts = [];
let student = null; // the record shown: GET /admin/students/{srn}'s answer
let auditPages = [null]; // the "before" of each page seen; the last one is shown
let auditNext = null;
let charts = [];

// ---- small helpers ---------------------------------------------------------------------

/** An element with properties (or attributes, for names with a dash) and children. */
function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null) continue;
    if (key.includes("-")) node.setAttribute(key, value);
    else node[key] = value;
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

/** A section's message, next to its form: an error is an alert, a success a status; one
 * new element each time, so a screen reader announces it once. Empty text clears it. */
function say(where, text, ok = false) {
  const box = $(`${where}-message`);
  if (!text) return box.replaceChildren();
  box.replaceChildren(el("p", { className: ok ? "message ok" : "message",
    role: ok ? "status" : "alert", textContent: text }));
  if (!ok && !inView(box)) box.scrollIntoView({ block: "nearest" });
}

/** Whether ``node`` is on screen now. */
function inView(node) {
  const box = node.getBoundingClientRect();
  return box.top >= 0 && box.bottom <= window.innerHeight;
}

/** Run ``work`` with ``buttons`` disabled (no double submits) and ``where``'s message
 * cleared first; they come back whatever happens. */
async function busy(where, buttons, work) {
  if (where) say(where, "");
  const list = [].concat(buttons).filter(Boolean);
  for (const b of list) b.disabled = true;
  try {
    return await work();
  } finally {
    for (const b of list) b.disabled = false;
  }
}

/** A form's submit button. */
const submitOf = (form) => form.querySelector('button[type="submit"]');

/** The server's refusal as one sentence (a 422 names each bad field). */
function detail(data) {
  const errors = data && data.errors;
  if (errors && typeof errors === "object") {
    return Object.entries(errors).map(([k, v]) => `${k}: ${[].concat(v).join(" ")}`).join("; ");
  }
  const value = data && data.detail;
  if (typeof value === "string") {
    const friendly = FRIENDLY.find(([pattern]) => pattern.test(value));
    return friendly ? friendly[1] : value;
  }
  return "The server refused; try again.";
}

const pad = (n) => String(n).padStart(2, "0");

function addDays(date, days) {
  const [y, m, d] = date.split("-").map(Number);
  return new Date(Date.UTC(y, m - 1, d + days)).toISOString().slice(0, 10);
}

/** Today's date in ``zone``, as the lab's calendar has it. */
const todayIn = (zone) => new Intl.DateTimeFormat("en-CA", { timeZone: zone }).format(new Date());

const labTime = (instant) => instant.slice(11, 16); // the wall time, as the server sent it
const span = (item) => `${labTime(item.start)}\u2013${labTime(item.end)}`;
const DAY_FORMAT = new Intl.DateTimeFormat("en-GB",
  { weekday: "short", day: "numeric", month: "short", year: "numeric", timeZone: "UTC" });

function dayLabel(date) {
  const [y, m, d] = date.split("-").map(Number);
  return DAY_FORMAT.format(new Date(Date.UTC(y, m - 1, d)));
}

function resourceOf(id) {
  return resources.find((r) => r.id === id) || { id, name: id, timezone: defaultZone() };
}

function defaultZone() {
  const fallback = resources.find((r) => r.default) || resources[0];
  return fallback ? fallback.timezone : "UTC";
}

/** An instant (any offset) as the wall time in ``zone``: "Wed, 25 Nov 2026, 09:32". */
function inZone(instant, zone = defaultZone()) {
  if (!instant) return "\u2014";
  return new Intl.DateTimeFormat("en-GB", { timeZone: zone, weekday: "short", day: "numeric",
    month: "short", year: "numeric", hour: "2-digit", minute: "2-digit", hourCycle: "h23" })
    .format(new Date(instant));
}

/** An instant as the wall clock in ``zone``: "09:32". */
const timeIn = (instant, zone) => new Intl.DateTimeFormat("en-GB",
  { timeZone: zone, hour: "2-digit", minute: "2-digit", hourCycle: "h23" })
  .format(new Date(instant));

/** Minutes east of UTC in ``zone`` at the instant ``ms``. */
function offsetMinutes(zone, ms) {
  const parts = {};
  new Intl.DateTimeFormat("en-US", {
    timeZone: zone, hourCycle: "h23", year: "numeric", month: "2-digit", day: "2-digit",
    hour: "2-digit", minute: "2-digit", second: "2-digit",
  }).formatToParts(new Date(ms)).forEach((p) => { parts[p.type] = Number(p.value); });
  const wall = Date.UTC(parts.year, parts.month - 1, parts.day, parts.hour % 24, parts.minute,
    parts.second);
  return Math.round((wall - ms) / 60000);
}

/** A wall time on a date in ``zone`` as an ISO instant with that zone's offset then. */
function zonedInstant(date, time, zone) {
  const [y, m, d] = date.split("-").map(Number);
  const [hh, mm] = time.split(":").map(Number);
  const wall = Date.UTC(y, m - 1, d, hh, mm);
  let offset = offsetMinutes(zone, wall);
  offset = offsetMinutes(zone, wall - offset * 60000); // settles across a DST change
  const sign = offset < 0 ? "-" : "+";
  const abs = Math.abs(offset);
  return `${date}T${pad(hh)}:${pad(mm)}:00${sign}${pad(Math.floor(abs / 60))}:${pad(abs % 60)}`;
}

/** A file the browser saves: the CSV export, a chart's table. */
function download(blob, name) {
  const url = URL.createObjectURL(blob);
  const link = el("a", { href: url, download: name });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

/** One CSV cell: quoted when it must be; text a spreadsheet would run as a formula (not
 * a number) gets a leading apostrophe. */
function csvCell(value) {
  let text = String(value);
  if (/^[=+\-@\t\r]/.test(text) && !/^[+-]?\d+(\.\d+)?$/.test(text)) text = "'" + text;
  return /[",\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

// ---- the session -----------------------------------------------------------------------

function setSession(value) {
  session = value;
  if (value) localStorage.setItem(SESSION_KEY, JSON.stringify(value));
  else localStorage.removeItem(SESSION_KEY);
}

const UNREACHABLE = { detail: "Could not reach the server; try again." };

/** One call to this server with the session's token (if any); never throws: the answer,
 * or null when the server could not be reached. A 401 signs out. */
async function send(method, path, body) {
  const headers = {};
  if (session) headers.Authorization = `Bearer ${session.token}`;
  if (body) headers["Content-Type"] = "application/json";
  let resp;
  try {
    resp = await fetch(path, { method, headers, body: body && JSON.stringify(body) });
  } catch (e) {
    return null;
  }
  if (resp.status === 401 && session) {
    setSession(null);
    show();
  }
  return resp;
}

/** A JSON call: whether it succeeded, its status and its body. */
async function api(method, path, body) {
  const resp = await send(method, path, body);
  if (!resp) return { ok: false, status: 0, data: UNREACHABLE };
  let data = null;
  try { data = await resp.json(); } catch (e) { /* no JSON body */ }
  return { ok: resp.ok, status: resp.status, data };
}

/** Which panels show: the sign-in form, the refusal, or the console. */
async function show() {
  role = null;
  $("who-bar").hidden = !session;
  $("signout").hidden = !session;
  $("account").hidden = Boolean(session);
  $("console").hidden = true;
  $("denied").hidden = true;
  $("check").hidden = true;
  if (!session) return;
  $("who").textContent = session.user.name || session.user.srn;
  $("role").textContent = "checking…";
  // The API says whether we are staff: a student's 403 is shown as it is.
  const { ok, status, data } = await api("GET",
    `/admin/students/${encodeURIComponent(session.user.srn)}`);
  if (!session) return; // signed out meanwhile
  if (status === 403) {
    $("role").textContent = "student";
    $("denied-title").textContent = detail(data);
    $("denied-text").textContent =
      `The server answered 403: ${detail(data)}. You are signed in as a student.`;
    $("denied").hidden = false;
    $("denied").focus();
    return;
  }
  if (!ok) {
    // Not a refusal: the server is down or failed. Say so, and offer to ask again.
    $("role").textContent = "not checked";
    $("check").hidden = false;
    say("check", `Could not check your role: ${detail(data)}`);
    return;
  }
  role = data.role;
  $("role").textContent = role;
  $("console").hidden = false;
  await start();
}

$("check-retry").addEventListener("click", () => busy("check", $("check-retry"), show));

$("signin").addEventListener("submit", async (event) => {
  event.preventDefault();
  const username = $("username").value.trim();
  const password = $("password").value;
  $("password").value = ""; // never kept, not even in the form
  const { ok, data } = await busy("signin", $("signin-button"),
    () => api("POST", "/auth/login", { username, password }));
  if (!ok) return say("signin", detail(data));
  setSession({ token: data.token, expires_at: data.expires_at, user: data.user });
  await show();
  if (role) $("board-title").focus(); // the console's first heading
});

$("signout").addEventListener("click", async () => {
  await api("POST", "/auth/logout");
  setSession(null);
  say("signin", "Signed out.", true);
  await show();
  $("username").focus();
});

/** The console's first reads, once the API has said we are staff. */
async function start() {
  const { ok, data } = await api("GET", "/resources");
  if (!ok) {
    $("check").hidden = false;
    return say("check", `Could not load the resources: ${detail(data)}`);
  }
  resources = data.resources;
  for (const select of document.querySelectorAll(".resource-select")) {
    const options = resources.map((r) => el("option", { value: r.id, textContent: r.name }));
    if (select.dataset.any) {
      options.unshift(el("option", { value: "", textContent: select.dataset.any }));
    }
    select.replaceChildren(...options);
  }
  const first = resources.find((r) => r.default) || resources[0];
  $("board-resource").value = first.id;
  $("blackout-resource").value = first.id;
  const today = todayIn(first.timezone);
  $("board-date").value = today;
  $("blackout-date").value = today;
  $("blackout-end-date").value = today;
  $("audit-when").textContent = `When (${defaultZone()})`;
  month = today.slice(0, 7);
  $("student").hidden = true;
  await Promise.all([loadBoard(), loadMonth(), searchAudit(), loadAnalytics()]);
}

// ---- the board -------------------------------------------------------------------------

async function loadBoard() {
  const resource = $("board-resource").value;
  const date = $("board-date").value;
  const query = new URLSearchParams({ resource });
  if (date) query.set("date", date);
  const { ok, data } = await busy("board", submitOf($("board-form")),
    () => api("GET", `/admin/bookings?${query}`));
  // A failed load hides the old board rather than showing it as if it were current.
  $("board-view").hidden = !ok;
  if (!ok) return say("board", `The board was not updated: ${detail(data)}`);
  shownBoard = data;
  renderBoard();
}

function slotState(slot) {
  if (slot.state === "closed") return slot.reason === "ended" ? "Ended" : `Closed: ${slot.reason}`;
  if (slot.booking) return STATUS[slot.booking.status] || slot.booking.status;
  return slot.state === "free" ? "Free" : slot.state;
}

function renderBoard() {
  const board = shownBoard;
  const resource = resourceOf(board.resource);
  $("board-caption").textContent = `${resource.name}, ${dayLabel(board.date)}`;
  $("board-zone").textContent = `${resource.name}, ${dayLabel(board.date)}. ` +
    `Times are in ${board.timezone}.`;
  const rows = board.slots.map((slot) => {
    const booking = slot.booking;
    const who = booking ? `${booking.name || booking.srn} (${booking.srn})` : "\u2014";
    let arrived = booking ? "Not yet" : "\u2014";
    if (booking && booking.checked_in_at) {
      arrived = `At ${timeIn(booking.checked_in_at, board.timezone)}`;
    }
    const line = slot.waitlist.length
      ? slot.waitlist.map((w) => `${w.position}. ${w.name || w.srn} (${w.srn})`).join(", ")
      : "\u2014";
    const actions = el("div", { className: "actions" });
    if (booking && booking.status === "booked") {
      if (!booking.checked_in_at && duringHour(slot)) {
        const come = el("button", {
          type: "button", textContent: "Check in",
          "aria-label": `Check in ${booking.srn} for ${span(slot)}`,
        });
        come.addEventListener("click", () => checkIn(slot, come));
        actions.append(come);
      }
      const cancel = el("button", {
        type: "button", className: "secondary", textContent: "Cancel",
        "aria-label": `Cancel ${booking.srn}'s booking ${span(slot)}`,
      });
      cancel.addEventListener("click", () => askCancel(slot));
      actions.append(cancel);
    }
    // Each cell names its column (data-label): on a phone each row is a card.
    const cell = (label, text) => el("td", { "data-label": label, textContent: text });
    return el("tr", { "data-state": slot.state, "data-slot": slot.id },
      cell("Time", span(slot)), cell("State", slotState(slot)), cell("Who", who),
      cell("Check-in", arrived), cell("Waitlist", line),
      el("td", { className: "row-actions" }, actions));
  });
  $("board-table").tBodies[0].replaceChildren(...rows);
}

/** Whether a slot's hour is on (from a little before it starts): the desk checks in then;
 * the server decides the exact bounds. */
function duringHour(slot) {
  const now = Date.now();
  return Date.parse(slot.start) - CHECK_IN_EARLY <= now && now < Date.parse(slot.end);
}

/** A student at the lab's desk: staff check them in (the audit trail names who did). */
async function checkIn(slot, button) {
  const { ok, data } = await busy("board", button,
    () => api("POST", `/bookings/${slot.booking.id}/check-in`));
  await Promise.all([loadBoard(), searchAudit()]);
  if (!ok) say("board", detail(data));
  else say("board", `Checked ${slot.booking.srn} in for ${span(slot)}.`, true);
  focusRow(slot.id);
}

/** After a row's action: its rebuilt row's first button, else the board's heading. */
function focusRow(slotId) {
  const next = document.querySelector(`#board-table tr[data-slot="${slotId}"] button`);
  (next || $("board-title")).focus();
}

$("board-form").addEventListener("submit", (event) => {
  event.preventDefault();
  loadBoard();
});

let cancelling = null; // the slot whose booking the dialog asks about

function askCancel(slot) {
  cancelling = slot;
  const resource = resourceOf(shownBoard.resource);
  $("cancel-what").textContent = `${slot.booking.name || slot.booking.srn} ` +
    `(${slot.booking.srn}), ${resource.name}, ${dayLabel(shownBoard.date)}, ${span(slot)}.`;
  $("cancel-reason").value = "";
  $("cancel-error").replaceChildren();
  $("cancel-dialog").showModal();
  $("cancel-reason").focus();
}

$("cancel-keep").addEventListener("click", () => $("cancel-dialog").close());

$("cancel-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const slot = cancelling;
  const reason = $("cancel-reason").value.trim();
  if (!reason) {
    $("cancel-error").replaceChildren(el("p", { className: "message", role: "alert",
      textContent: "Enter a reason." }));
    return $("cancel-reason").focus();
  }
  const { ok, data } = await busy("board", [$("cancel-confirm"), $("cancel-keep")],
    () => api("POST", `/admin/bookings/${slot.booking.id}/cancel`, { reason }));
  $("cancel-dialog").close();
  await Promise.all([loadBoard(), searchAudit()]);
  if (!ok) say("board", detail(data));
  else say("board", `Cancelled ${slot.booking.srn}'s booking ${span(slot)}: ${reason}`, true);
  focusRow(slot.id);
});

// ---- blackouts -------------------------------------------------------------------------

/** The dates a blackout covers, in its resource's calendar (its end is exclusive). */
function blackoutDates(blackout) {
  const first = blackout.start.slice(0, 10);
  let last = blackout.end.slice(0, 10);
  if (last > first && labTime(blackout.end) === "00:00") last = addDays(last, -1);
  const dates = [];
  for (let d = first; d <= last; d = addDays(d, 1)) dates.push(d);
  return dates;
}

async function loadMonth() {
  const [first, last] = monthBounds();
  const query = new URLSearchParams({ from: first, to: last });
  const { ok, data } = await api("GET", `/admin/blackouts?${query}`);
  $("month-view").hidden = !ok;
  if (!ok) return say("blackouts", `The calendar was not updated: ${detail(data)}`);
  monthBlackouts = data.blackouts;
  renderMonth();
}

/** The month's first and last dates. */
function monthBounds() {
  const first = `${month}-01`;
  return [first, addDays(addDays(first, 31).slice(0, 7) + "-01", -1)];
}

/** The month of the resource chosen in the form: its blackouts only. */
function renderMonth() {
  const [first, last] = monthBounds();
  const chosen = resourceOf($("blackout-resource").value);
  const shown = monthBlackouts.filter((b) => b.resource === chosen.id);
  $("blackout-list-title").textContent = `${chosen.name}: blackouts this month`;
  $("month-caption").textContent = `Days of the month with ${chosen.name}'s blackouts`;
  const [y, m] = month.split("-").map(Number);
  $("month-title").textContent = new Intl.DateTimeFormat("en-GB",
    { month: "long", year: "numeric", timeZone: "UTC" }).format(new Date(Date.UTC(y, m - 1, 1)));
  const table = $("month");
  const head = WEEKDAYS.map((d) => el("th", { scope: "col", textContent: d }));
  table.tHead.rows[0].replaceChildren(...head);
  const byDate = {};
  for (const b of shown) {
    for (const d of blackoutDates(b)) (byDate[d] = byDate[d] || []).push(b);
  }
  const today = todayIn(defaultZone());
  const lead = (new Date(`${first}T00:00:00Z`).getUTCDay() + 6) % 7; // Monday first
  const cells = Array.from({ length: lead }, () => el("td"));
  for (let d = first; d <= last; d = addDays(d, 1)) {
    const found = byDate[d] || [];
    const many = found.length > 1 ? "s" : "";
    const label = `${dayLabel(d)}: ${found.length ? `${found.length} blackout${many}` : "open"}`;
    const button = el("button", {
      type: "button", className: found.length ? "closed" : "", "aria-label": label,
      "data-date": d, "aria-current": d === today ? "date" : null,
    }, el("span", { textContent: String(Number(d.slice(8))) }),
    found.length
      ? el("span", { className: "count", textContent: `${found.length} closed` }) : null);
    button.addEventListener("click", () => {
      $("blackout-date").value = d;
      $("blackout-end-date").value = d;
      $("blackout-start").focus();
    });
    cells.push(el("td", {}, button));
  }
  const rows = [];
  for (let i = 0; i < cells.length; i += 7) rows.push(el("tr", {}, ...cells.slice(i, i + 7)));
  table.tBodies[0].replaceChildren(...rows);
  const items = shown.map((b) => {
    const resource = resourceOf(b.resource);
    const [startDay, endDay] = [b.start.slice(0, 10), b.end.slice(0, 10)];
    const until = endDay === startDay ? "" : `${dayLabel(endDay)} `;
    const text = `${resource.name}: ${dayLabel(startDay)} ${labTime(b.start)} \u2013 ` +
      `${until}${labTime(b.end)} (${resource.timezone}): ${b.reason}`;
    const lift = el("button", { type: "button", className: "secondary", textContent: "Lift",
      "aria-label": `Lift the blackout of ${text}` });
    lift.addEventListener("click", () => liftBlackout(b, text, lift));
    return el("li", { "data-blackout": b.id }, el("span", { textContent: text }), lift);
  });
  $("blackout-list").replaceChildren(...(items.length ? items
    : [el("li", {}, el("span", { textContent: "None this month." }))]));
}

async function liftBlackout(blackout, text, button) {
  const { ok, data } = await busy("blackouts", button,
    () => api("DELETE", `/admin/blackouts/${blackout.id}`));
  if (!ok) return say("blackouts", detail(data));
  await Promise.all([loadMonth(), loadBoard(), searchAudit()]);
  say("blackouts", `Lifted the blackout of ${text}.`, true);
  // The next blackout's Lift, else the section's heading.
  ($("blackout-list").querySelector("button") || $("blackouts-title")).focus();
}

function moveMonth(step) {
  const [y, m] = month.split("-").map(Number);
  month = new Date(Date.UTC(y, m - 1 + step, 1)).toISOString().slice(0, 7);
  loadMonth();
}

$("month-prev").addEventListener("click", () => moveMonth(-1));
$("month-next").addEventListener("click", () => moveMonth(1));

$("blackout-resource").addEventListener("change", () => renderMonth());
// The end date follows the start date until it is set apart (never before it).
$("blackout-date").addEventListener("change", () => {
  const start = $("blackout-date").value;
  if (!$("blackout-end-date").value || $("blackout-end-date").value < start) {
    $("blackout-end-date").value = start;
  }
});

$("blackout-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const resource = resourceOf($("blackout-resource").value);
  const date = $("blackout-date").value;
  const until = $("blackout-end-date").value || date;
  const reason = $("blackout-reason").value.trim();
  if (!reason) {
    say("blackouts", "Enter a reason.");
    return $("blackout-reason").focus();
  }
  const body = {
    resource: resource.id,
    start: zonedInstant(date, $("blackout-start").value, resource.timezone),
    end: zonedInstant(until, $("blackout-end").value, resource.timezone),
    reason,
  };
  const { ok, data } = await busy("blackouts", submitOf($("blackout-form")),
    () => api("POST", "/admin/blackouts", body));
  if (!ok) return say("blackouts", detail(data));
  const cancelled = data.cancelled ? data.cancelled.length : 0;
  const b = data.blackout;
  const to = until === date ? labTime(b.end) : `${dayLabel(until)}, ${labTime(b.end)}`;
  $("blackout-reason").value = "";
  month = date.slice(0, 7);
  await Promise.all([loadMonth(), loadBoard(), searchAudit()]);
  say("blackouts", `Closed ${resource.name} from ${dayLabel(date)}, ${labTime(b.start)} to ` +
    `${to}: ${b.reason}. Cancelled ${cancelled} booking${cancelled === 1 ? "" : "s"}.`, true);
});

// ---- students --------------------------------------------------------------------------

async function lookUp(srn) {
  const { ok, data } = await busy("students", submitOf($("student-form")),
    () => api("GET", `/admin/students/${encodeURIComponent(srn)}`));
  if (!ok) {
    $("student").hidden = true;
    student = null;
    return say("students", detail(data));
  }
  student = data;
  renderStudent();
}

function renderStudent() {
  const s = student;
  const admin = role === "admin";
  $("student").hidden = false;
  $("student-title").textContent = s.srn;
  const sources = { config: "set in the configuration", runtime: "set by an admin",
    default: "everyone's" };
  $("student-role").textContent = `${s.role} (${sources[s.role_source]})`;
  $("student-no-shows").textContent = String(s.no_shows);
  $("student-suspension").textContent = s.suspended_until
    ? `Suspended until ${inZone(s.suspended_until)} (${defaultZone()})` : "Not suspended";
  $("lift-suspension").hidden = !(admin && s.suspended_until);
  $("lift-note").hidden = admin || !s.suspended_until;
  $("role-form").hidden = !admin || s.role_source === "config";
  $("role-select").value = s.role;
  $("role-note").hidden = !(admin && s.role_source === "config");
  $("role-note").textContent = "This role is set in the configuration; it cannot be changed here.";
  const rows = s.bookings.map((b) => el("tr", {},
    el("td", { textContent: dayLabel(b.date) }), el("td", { textContent: span(b) }),
    el("td", { textContent: resourceOf(b.resource).name }),
    el("td", { textContent: b.status.replace("_", "-") }),
    el("td", { textContent: b.checked_in_at
      ? timeIn(b.checked_in_at, resourceOf(b.resource).timezone) : "\u2014" })));
  $("student-bookings").tBodies[0].replaceChildren(...(rows.length ? rows
    : [el("tr", {}, el("td", { colSpan: 5, textContent: "No bookings." }))]));
  const line = s.waitlist.map((w) => el("li", {}, el("span", {
    textContent: `${resourceOf(w.resource).name}, ${dayLabel(w.date)}, ${span(w)}: ` +
      (w.status === "waiting" ? `#${w.position} in line` : w.status),
  })));
  $("student-waitlist").replaceChildren(...(line.length ? line
    : [el("li", {}, el("span", { textContent: "Not waiting for any slot." }))]));
}

$("student-form").addEventListener("submit", (event) => {
  event.preventDefault();
  // SRNs are upper case: "pes2ug22cs001 " finds PES2UG22CS001.
  const srn = $("student-srn").value.trim().toUpperCase();
  $("student-srn").value = srn;
  if (srn) lookUp(srn);
  else say("students", "Enter an SRN.");
});

$("lift-suspension").addEventListener("click", async () => {
  const srn = student.srn;
  const { ok, data } = await busy("students", $("lift-suspension"),
    () => api("DELETE", `/admin/students/${encodeURIComponent(srn)}/suspension`));
  if (!ok) return say("students", detail(data));
  await lookUp(srn);
  say("students", `Lifted the suspension of ${srn}.`, true);
  $("student-title").focus();
});

const article = (word) => (/^[aeiou]/.test(word) ? "an" : "a");

// A role changes what someone may do: the dialog asks first.
$("role-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const wanted = $("role-select").value;
  $("role-what").textContent = `Make ${student.srn} ${article(wanted)} ${wanted}?`;
  $("role-dialog").showModal();
});

$("role-keep").addEventListener("click", () => $("role-dialog").close());

$("role-confirm-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const srn = student.srn;
  const wanted = $("role-select").value;
  const { ok, data } = await busy("students", [$("role-confirm"), $("role-keep")],
    () => api("PUT", `/admin/roles/${encodeURIComponent(srn)}`, { role: wanted }));
  $("role-dialog").close();
  if (!ok) return say("students", detail(data));
  await lookUp(srn);
  say("students", `${srn} is now ${article(data.role)} ${data.role}.`, true);
  $("student-title").focus();
});

// ---- the audit trail -------------------------------------------------------------------

function auditFilters() {
  const query = new URLSearchParams();
  const fields = { srn: "audit-srn", resource: "audit-resource", action: "audit-action",
    from: "audit-from", to: "audit-to" };
  for (const [name, id] of Object.entries(fields)) {
    const value = $(id).value.trim();
    if (value) query.set(name, value);
  }
  return query;
}

async function loadAudit() {
  const query = auditFilters();
  query.set("limit", $("audit-limit").value);
  const before = auditPages[auditPages.length - 1];
  if (before) query.set("before", before);
  const { ok, data } = await busy("audit",
    [submitOf($("audit-form")), $("audit-older"), $("audit-newer")],
    () => api("GET", `/admin/audit?${query}`));
  $("audit-view").hidden = !ok;
  if (!ok) return say("audit", `The audit trail was not updated: ${detail(data)}`);
  auditNext = data.next_before;
  const rows = data.events.map((e) => el("tr", { "data-event": e.id },
    el("td", { textContent: inZone(e.at) }), el("td", { textContent: e.action }),
    el("td", { textContent: e.holder_srn || "\u2014" }),
    el("td", { textContent: e.actor_srn || "system" }),
    el("td", { textContent: e.resource ? resourceOf(e.resource).name : "\u2014" }),
    el("td", { textContent: e.date ? dayLabel(e.date) : "\u2014" }),
    el("td", { className: "num", textContent: e.slot_id ? String(e.slot_id) : "\u2014" }),
    el("td", { className: "num", textContent: e.booking_id ? String(e.booking_id) : "\u2014" }),
    el("td", { textContent: e.reason || "" })));
  $("audit-table").tBodies[0].replaceChildren(...(rows.length ? rows
    : [el("tr", {}, el("td", { colSpan: 9, textContent: "No events match." }))]));
  $("audit-older").disabled = !auditNext;
  $("audit-newer").disabled = auditPages.length < 2;
  $("audit-page").textContent = `Page ${auditPages.length}`;
}

function searchAudit() {
  auditPages = [null];
  return loadAudit();
}

$("audit-form").addEventListener("submit", (event) => {
  event.preventDefault();
  searchAudit();
});
$("audit-older").addEventListener("click", () => {
  if (!auditNext) return;
  auditPages.push(auditNext);
  loadAudit();
});
$("audit-newer").addEventListener("click", () => {
  if (auditPages.length < 2) return;
  auditPages.pop();
  loadAudit();
});

// The export needs the bearer token, which a plain link cannot send: fetch it, save it.
$("audit-csv").addEventListener("click", async () => {
  if (!session) return say("audit", "Your session has ended. Please sign in again.");
  const resp = await busy("audit", $("audit-csv"),
    () => send("GET", `/admin/audit.csv?${auditFilters()}`));
  if (!resp) return say("audit", UNREACHABLE.detail);
  if (!resp.ok) {
    let data = null;
    try { data = await resp.json(); } catch (e) { /* no JSON body */ }
    return say("audit", detail(data));
  }
  download(await resp.blob(), "rero-audit.csv");
  say("audit", "Exported the audit trail as rero-audit.csv.", true);
});

// ---- analytics -------------------------------------------------------------------------

async function loadAnalytics() {
  const query = new URLSearchParams();
  for (const [name, id] of [["from", "analytics-from"], ["to", "analytics-to"],
    ["resource", "analytics-resource"]]) {
    if ($(id).value) query.set(name, $(id).value);
  }
  const { ok, data } = await busy("analytics", submitOf($("analytics-form")),
    () => api("GET", `/admin/analytics?${query}`));
  // Old numbers are not shown under new dates: a refusal hides them.
  $("analytics").hidden = !ok;
  if (!ok) return say("analytics", `Analytics not updated: ${detail(data)}`);
  renderAnalytics(data);
}

$("analytics-form").addEventListener("submit", (event) => {
  event.preventDefault();
  loadAnalytics();
});

const percent = (x) => (x === null || x === undefined ? "\u2014" : `${(100 * x).toFixed(1)}%`);
const hours = (x) => (x === null || x === undefined ? "\u2014" : `${x.toFixed(1)} h`);

function fillTable(table, caption, head, rows) {
  const cap = table.caption || table.createCaption();
  cap.textContent = caption;
  table.replaceChildren(cap,
    el("thead", {}, el("tr", {}, ...head.map((h, i) => el("th", { scope: "col", textContent: h,
      className: i > 0 && rows.length && typeof rows[0][i] === "number" ? "num" : "" })))),
    el("tbody", {}, ...rows.map((row) => el("tr", {}, ...row.map((cell, i) => {
      if (i === 0) return el("th", { scope: "row", textContent: String(cell) });
      const className = typeof cell === "number" ? "num" : "";
      return el("td", { className, textContent: String(cell) });
    })))));
}

function renderAnalytics(data) {
  const names = data.resources.map((id) => resourceOf(id).name).join(", ");
  const facts = [
    ["Dates", `${data.from} to ${data.to}`], ["Resources", names || "\u2014"],
    ["Bookings", data.bookings], ["Cancellations", data.cancellations],
    ["Cancellation lead (median, 90th percentile)",
      `${hours(data.cancellation_lead_hours.p50)}, ${hours(data.cancellation_lead_hours.p90)}`],
    ["No-show rate", percent(data.no_show_rate)], ["Students", data.unique_students],
    ["Repeat students", data.repeat_students],
    ["Waitlist conversion", percent(data.waitlist_conversion)],
  ];
  $("summary").replaceChildren(...facts.flatMap(([k, v]) =>
    [el("dt", { textContent: k }), el("dd", { textContent: String(v) })]));
  for (const chart of charts) chart.destroy();
  charts = [];
  renderUtilization(data.utilization);
  renderCounts(data);
  renderFill(data.fill_minutes_after_open);
}

/** Booked share by weekday and hour, averaged over the resources shown. */
function renderUtilization(cells) {
  const sums = {};
  for (const c of cells) {
    const key = `${c.weekday}:${c.hour}`;
    sums[key] = sums[key] || [0, 0];
    sums[key][0] += c.booked_fraction;
    sums[key][1] += 1;
  }
  const hourList = [...new Set(cells.map((c) => c.hour))].sort((a, b) => a - b);
  const share = (day, hour) => {
    const found = sums[`${day}:${hour}`];
    return found ? found[0] / found[1] : null;
  };
  const days = WEEKDAYS.map((_, i) => i).filter((d) => hourList.some((h) => share(d, h) !== null));
  const table = $("table-utilization");
  fillTable(table, "Utilization (%) by weekday and hour",
    ["Weekday", ...hourList.map((h) => `${pad(h)}:00`)],
    days.map((d) => [WEEKDAYS[d], ...hourList.map((h) => {
      const value = share(d, h);
      return value === null ? "\u2014" : Math.round(100 * value);
    })]));
  // Shade each cell by its share: a heat map that is also the table.
  for (const cell of table.querySelectorAll("tbody td")) {
    const value = Number(cell.textContent);
    if (Number.isNaN(value)) continue;
    cell.style.setProperty("--share", String(value / 100));
    cell.classList.toggle("dark", value >= 55);
  }
  if (!hourList.length) table.caption.textContent += ": no open slots in these dates";
  draw("chart-utilization", {
    scales: { x: { time: false }, y: { range: [0, 100] } },
    axes: [{ label: "Hour of day", incrs: [1, 2, 3, 4, 6],
      values: (u, splits) => splits.map((h) => `${pad(h)}:00`) },
      { label: "Booked (%)" }],
    series: [{ label: "Hour" }, ...days.map((d) => ({
      label: WEEKDAYS[d], stroke: COLOURS[d], width: 2, spanGaps: false,
    }))],
  }, [hourList, ...days.map((d) => hourList.map((h) => {
    const value = share(d, h);
    return value === null ? null : 100 * value;
  }))]);
}

function renderCounts(data) {
  const labels = ["Bookings", "Cancellations"];
  const values = [data.bookings, data.cancellations];
  fillTable($("table-counts"), "Bookings and cancellations", ["What", "Count"],
    labels.map((label, i) => [label, values[i]]));
  const bars = window.uPlot && window.uPlot.paths && window.uPlot.paths.bars
    ? window.uPlot.paths.bars({ size: [0.5] }) : undefined;
  draw("chart-counts", {
    scales: {
      x: { time: false, range: [-0.5, 1.5] },
      y: { range: (u, lo, hi) => [0, Math.max(1, hi)] },
    },
    axes: [{ splits: () => [0, 1], values: (u, splits) => splits.map((v) => labels[v] || "") },
      { label: "Events" }],
    series: [{ label: "What" }, { label: "Count", stroke: COLOURS[0], fill: "rgb(11 79 156 / .35)",
      paths: bars, points: { show: false } }],
    legend: { show: false },
  }, [[0, 1], values]);
}

/** Fill times in hours (2509.8 minutes is 41.8 h), one decimal, as the table shows them. */
const fillHours = (minutes) => Number((minutes / 60).toFixed(1));

function renderFill(found) {
  fillTable($("table-fill"), "Hours from opening to full, per resource and date",
    ["Date", "Resource", "Hours"],
    found.map((f) => [dayLabel(f.date), resourceOf(f.resource).name, fillHours(f.minutes)]));
  if (!found.length) $("table-fill").caption.textContent += ": no date was booked full";
  const ids = [...new Set(found.map((f) => f.resource))];
  const dates = [...new Set(found.map((f) => f.date))].sort();
  const at = (date) => Date.parse(`${date}T00:00:00Z`) / 1000;
  const DAY = 86400;
  draw("chart-fill", {
    // One date alone would stretch the axis over years: a day either side instead.
    scales: { x: dates.length === 1
      ? { time: true, range: [at(dates[0]) - DAY, at(dates[0]) + DAY] } : { time: true } },
    // Dates are calendar dates, placed at midnight UTC: read them back in UTC.
    tzDate: (ts) => window.uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"),
    axes: [{ label: "Date" }, { label: "Hours" }],
    legend: { show: ids.length > 1 }, // one resource: its name is in the table
    series: [{ label: "Date" }, ...ids.map((id, i) => ({
      label: resourceOf(id).name, stroke: COLOURS[i % COLOURS.length], width: 0,
      paths: () => null, points: { show: true, size: 8, fill: COLOURS[i % COLOURS.length] },
    }))],
  }, [dates.map(at), ...ids.map((id) => dates.map((d) => {
    const hit = found.find((f) => f.resource === id && f.date === d);
    return hit ? fillHours(hit.minutes) : null;
  }))]);
}

/** One uPlot chart in ``id`` (its numbers are in the table beside it, for everyone). */
function draw(id, options, data) {
  const box = $(id);
  box.replaceChildren();
  if (!window.uPlot || !data[0].length) {
    box.hidden = true;
    return;
  }
  box.hidden = false;
  const width = Math.max(280, box.clientWidth || 600);
  charts.push(new window.uPlot({ width, height: 240, ...options }, data, box));
}

window.addEventListener("resize", () => {
  for (const chart of charts) {
    const width = Math.max(280, chart.root.parentElement.clientWidth || 600);
    chart.setSize({ width, height: 240 });
  }
});

// A chart's table as CSV, from the cells shown.
for (const button of document.querySelectorAll("button.csv")) {
  button.addEventListener("click", () => {
    const table = $(button.dataset.table);
    const lines = [...table.rows].map((row) =>
      [...row.cells].map((cell) => csvCell(cell.textContent)).join(","));
    download(new Blob([lines.join("\n") + "\n"], { type: "text/csv" }), button.dataset.file);
  });
}

show();
