// The session token both pages keep (/board and /admin), one per server, under
// "rero.session:<origin>": signing in on one signs in on the other. Never a password.
"use strict";

/** The session saved under ``key``, unless it has expired (then it is removed). */
function loadSession(key) {
  try {
    const saved = JSON.parse(localStorage.getItem(key));
    if (saved && saved.token && new Date(saved.expires_at) > new Date()) return saved;
  } catch (e) { /* unreadable: treated as signed out */ }
  localStorage.removeItem(key);
  return null;
}
