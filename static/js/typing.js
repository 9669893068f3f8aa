/* Nous Chat: who is typing in a room. `typingLine` words the line ("alice is typing…"),
 * `TypingSender` decides the `typing` frames our composer sends, `Typers` keeps the others who are
 * typing (from their `typing` frames) and shows the line.
 *
 * Exported as `NousTyping` (and as a CommonJS module for tests/js under `node --test`); only
 * `Typers` needs a document.
 */
(function (root) {
  "use strict";

  var TYPING_RESEND_MS = 2000;   // at most one `typing: true` per this long while typing
  var TYPING_EXPIRE_MS = 6000;   // a typer we hear nothing more from (not even `false`) is dropped

  /* "alice is typing…", "alice and bob are typing…", "alice, bob and 3 others are typing…";
   * `me` is never listed. */
  function typingLine(users, me) {
    var names = [];
    (users || []).forEach(function (name) {
      if (name !== me && names.indexOf(name) < 0) names.push(name);
    });
    if (!names.length) return "";
    if (names.length === 1) return names[0] + " is typing…";
    if (names.length === 2) return names[0] + " and " + names[1] + " are typing…";
    if (names.length === 3) return names[0] + ", " + names[1] + " and " + names[2] + " are typing…";
    return names[0] + ", " + names[1] + " and " + (names.length - 2) + " others are typing…";
  }

  /* Decides the `typing` frames for one composer: `true` at most once per `intervalMs` while there
   * is text, `false` once when the text is cleared or sent. `send(bool)` puts a frame on the wire;
   * `clock.now()` gives milliseconds. */
  function TypingSender(send, clock, intervalMs) {
    this.send = send;
    this.clock = clock;
    this.intervalMs = intervalMs || TYPING_RESEND_MS;
    this.active = false;
    this.lastTrue = null;
  }

  /* The composer's text changed. */
  TypingSender.prototype.input = function (text) {
    if (!String(text || "").trim()) {
      this.stop();
      return;
    }
    var now = this.clock.now();
    if (this.active && this.lastTrue !== null && now - this.lastTrue < this.intervalMs) return;
    if (this.send(true) === false) return;  // not connected: try again on the next keystroke
    this.active = true;
    this.lastTrue = now;
  };

  /* The text was sent or cleared (or the page is leaving). */
  TypingSender.prototype.stop = function () {
    if (!this.active) return;
    this.active = false;
    this.lastTrue = null;
    this.send(false);
  };

  /* After a reconnect the server knows nothing of our typing. */
  TypingSender.prototype.reset = function () {
    this.active = false;
    this.lastTrue = null;
  };

  /* The others typing now, in the order they started, shown in `line`; `me()` is our user name. */
  function Typers(line, me) {
    this.line = line;
    this.me = me;
    this.names = [];
    this.timers = {};
  }

  /* A `typing` frame of `name` (or our word that they stopped: they sent, left, or we cannot hear). */
  Typers.prototype.set = function (name, typing) {
    if (name === this.me()) return;
    var self = this;
    root.clearTimeout(this.timers[name]);
    delete this.timers[name];
    var at = this.names.indexOf(name);
    if (typing) {
      if (at < 0) this.names.push(name);
      this.timers[name] = root.setTimeout(function () { self.set(name, false); }, TYPING_EXPIRE_MS);
    } else if (at >= 0) {
      this.names.splice(at, 1);
    }
    this.line.textContent = typingLine(this.names, this.me());
  };

  Typers.prototype.clear = function () {
    var self = this;
    this.names.slice().forEach(function (name) { self.set(name, false); });
  };

  /* Someone who left is not typing any more. */
  Typers.prototype.keepOnly = function (participants) {
    var self = this;
    this.names.filter(function (name) { return participants.indexOf(name) < 0; }).forEach(function (name) {
      self.set(name, false);
    });
  };

  var api = { typingLine: typingLine, TypingSender: TypingSender, Typers: Typers, TYPING_RESEND_MS: TYPING_RESEND_MS };
  if (typeof module === "object" && module.exports) module.exports = api;
  if (root) root.NousTyping = api;
})(typeof window !== "undefined" ? window : null);
