// Where this browser's session is. A session's pages are under an address of its own
// (/s/KEY/), and its cookie is sent only there: a link to a page without it, such as a
// notification's link to a card (/inbox#card-...), reaches the server with no cookie
// and is refused. The session's pages keep their address in this origin's storage,
// which no page of another port or host can read; the refusal opens the same page
// there, if this browser has a session. A refusal under the kept address means that
// session is over: the address is forgotten.
"use strict";
const KEPT = "trestle.pages";
const pages = document.body.dataset.pages;
if (pages) {
  localStorage.setItem(KEPT, pages);
  keepDevice(pages);
} else {
  const stored = localStorage.getItem(KEPT);
  // only an address as the server makes them: a value planted by a script of this
  // origin (a program on the port of a stopped dashboard) leads nowhere else
  const kept = /^\/s\/[0-9a-f]{32}$/.test(stored || "") ? stored : null;
  const here = location.pathname;
  if (kept && here.startsWith(kept + "/")) {
    localStorage.removeItem(KEPT);
  } else if (kept && document.body.dataset.findSession === "yes" && !here.startsWith("/s/")) {
    location.replace(kept + here + location.search + location.hash);
  }
}

// A login just made sends the browser a device token (NAME:TOKEN), which spares it a
// lockout of NAME that someone else's wrong passwords caused: the login form sends it
// back (login.js). It comes in a cookie only this session's pages get, named after their
// address (a page on another port can set a cookie of any other name for the whole
// host, and it would be read here), and moves into this origin's storage, which no other
// port can read.
function keepDevice(pages) {
  const named = "trestle_device_" + pages.split("/").pop();
  const cookie = document.cookie.split("; ").find((c) => c.startsWith(named + "="));
  if (!cookie) return;
  const [name, token] = cookie.slice(named.length + 1).split(":");
  if (name && token) localStorage.setItem("trestle.device." + name, token);
  document.cookie = named + "=; Path=" + pages + "; Max-Age=0; SameSite=Lax";
}
