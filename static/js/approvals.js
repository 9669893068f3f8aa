/* Nous Chat: the approval cards of tool calls that wait for a human (PROTOCOL.md `run.approval_required`,
 * `session.ready.pending_approvals`, `tool.decide`), shared by the chat and the room page.
 *
 * `new NousApprovals(container, send, clock, options)`:
 * - `container`: the element the cards go in, or a function `(run_id) -> element` (the run's bubble);
 * - `send(frame)`: puts a frame on the socket, false when not connected;
 * - `clock`: `{setTimeout, clearTimeout, now}` (milliseconds), so the countdown can be driven by a test;
 * - `options.canDecide`: false where someone else decides (a room member who is not its owner);
 * - `options.owner`: who decides, for the note "Waiting for <owner> to approve".
 *
 * The page calls `require(frame)` on `run.approval_required` (a second one for the same call is
 * ignored), `resolve(tool_call_id)` on `run.tool_result`, `endRun(run_id)` when a run ends,
 * `reset(pending_approvals)` after `session.ready`, and `handleError(frame)` first in its `error`
 * handler (true: the error was the answer to one of our `tool.decide`). Server text goes in by
 * textContent only.
 */
(function (root) {
  "use strict";

  var browserClock = {
    setTimeout: function (fn, ms) { return window.setTimeout(fn, ms); },
    clearTimeout: function (id) { window.clearTimeout(id); },
    now: function () { return Date.now(); },
  };

  /* "4:32" for 272 s. */
  function formatLeft(ms) {
    var secs = Math.max(0, Math.ceil(ms / 1000));
    var minutes = Math.floor(secs / 60), rest = secs % 60;
    return minutes + ":" + (rest < 10 ? "0" : "") + rest;
  }

  // static/js/page_util.js: loaded before this file in a page, required under Node.
  var util = root ? root.NousPage : require("./page_util.js");
  var uuid = util.uuid, make = util.make;

  function pretty(args) {
    try {
      return JSON.stringify(args === undefined ? {} : args, null, 2);
    } catch (err) {
      return String(args);
    }
  }

  function NousApprovals(container, send, clock, options) {
    this.container = container;
    this.send = send;
    this.clock = clock || browserClock;
    this.options = options || {};
    this.cards = {};   // tool_call_id -> card
    this.refs = {};    // client_id of a tool.decide in flight -> tool_call_id
    this.timer = null;
  }

  NousApprovals.formatLeft = formatLeft;

  NousApprovals.prototype.canDecide = function () {
    var can = this.options.canDecide;
    return typeof can === "function" ? !!can() : can !== false;
  };

  NousApprovals.prototype.has = function (toolCallId) {
    return !!this.cards[toolCallId];
  };

  /* `run.approval_required`, or an entry of `session.ready.pending_approvals`. */
  NousApprovals.prototype.require = function (frame) {
    var call = frame.tool_call || {};
    if (!call.id) return null;
    var card = this.cards[call.id];
    if (card) return card;
    card = this._build(frame.run_id, call, frame.expires_at);
    this.cards[call.id] = card;
    var parent = typeof this.container === "function" ? this.container(frame.run_id) : this.container;
    parent.appendChild(card.el);
    this._render(card);
    this._tickSoon();
    return card;
  };

  /* The call was decided (by anyone, in any tab) or timed out: its card goes. */
  NousApprovals.prototype.resolve = function (toolCallId) {
    var card = this.cards[toolCallId];
    if (!card) return;
    delete this.cards[toolCallId];
    if (card.ref) delete this.refs[card.ref];
    if (card.el.parentNode) card.el.parentNode.removeChild(card.el);
    if (!Object.keys(this.cards).length) this._stopTick();
  };

  /* A run ended (completed, stopped, failed): none of its calls waits any more. */
  NousApprovals.prototype.endRun = function (runId) {
    var self = this;
    Object.keys(this.cards).forEach(function (id) { if (self.cards[id].runId === runId) self.resolve(id); });
  };

  /* After `session.ready`: the calls still waiting have a card, and those decided meanwhile have
   * none. An expired card stays, saying "expired", while its run lasts: the run may still wait
   * for the server to notice. Decisions in flight on the old socket will never be answered, so
   * their buttons work again. */
  NousApprovals.prototype.reset = function (pending) {
    var self = this, keep = {};
    (pending || []).forEach(function (entry) {
      var card = self.require(entry);
      if (card) keep[card.id] = true;
    });
    Object.keys(this.cards).forEach(function (id) {
      if (!keep[id] && self._left(self.cards[id]) > 0) return self.resolve(id);
      var card = self.cards[id];
      if (card.ref) delete self.refs[card.ref];
      card.ref = null;
      self._render(card);
    });
  };

  /* The `error` answering one of our `tool.decide` frames: shown in its card. */
  NousApprovals.prototype.handleError = function (frame) {
    var id = frame.ref && this.refs[frame.ref];
    if (!id) return false;
    delete this.refs[frame.ref];
    var card = this.cards[id];
    if (!card) return true;
    card.ref = null;
    // Decided elsewhere or past its time: nothing to try again; the tool result will follow.
    var settled = frame.code === "timeout" || (frame.code === "bad_request" && /already/.test(frame.message || ""));
    card.settled = card.settled || settled;
    this._note(card, frame.message || "That did not work.", true);
    this._render(card);
    return true;
  };

  NousApprovals.prototype.decide = function (toolCallId, approved) {
    var card = this.cards[toolCallId];
    if (!card || card.ref || !this._open(card)) return false;
    var frame = { type: "tool.decide", tool_call_id: toolCallId, approved: !!approved, client_id: uuid() };
    var reason = card.reason.value.trim();
    if (!approved && reason) frame.reason = reason;
    if (this.send(frame) === false) {
      this._note(card, "Not connected; try again in a moment.", true);
      return false;
    }
    card.ref = frame.client_id;
    this.refs[frame.client_id] = toolCallId;
    this._note(card, approved ? "Approving…" : "Rejecting…", false);
    this._render(card);
    return true;
  };

  NousApprovals.prototype.destroy = function () {
    var self = this;
    Object.keys(this.cards).forEach(function (id) { self.resolve(id); });
    this._stopTick();
  };

  // --- inside ------------------------------------------------------------------------------

  NousApprovals.prototype._build = function (runId, call, expiresAt) {
    var self = this;
    var el = make("section", "approval-card");
    el.dataset.toolCallId = call.id;
    if (runId) el.dataset.runId = runId;
    el.setAttribute("aria-label", "Tool call waiting for approval");
    var head = make("div", "approval-head");
    head.appendChild(make("span", "approval-title", "Approve this tool call?"));
    var countdown = make("span", "approval-countdown");
    countdown.setAttribute("aria-live", "off");
    head.appendChild(countdown);
    var name = make("div", "approval-name");
    name.appendChild(make("span", "approval-label", "Tool "));
    name.appendChild(make("code", "tool-name", call.name || "?"));
    var args = make("pre", "approval-arguments", pretty(call.arguments));
    var reason = make("input", "reason");
    reason.type = "text";
    reason.maxLength = 2000;
    reason.placeholder = "Reason for rejecting (optional)";
    reason.setAttribute("aria-label", "Reason for rejecting (optional)");
    var actions = make("div", "approval-actions");
    var reject = make("button", "small-button reject", "Reject");
    reject.type = "button";
    var approve = make("button", "primary small-button approve", "Approve");
    approve.type = "button";
    actions.appendChild(reason);
    actions.appendChild(reject);
    actions.appendChild(approve);
    var note = make("p", "approval-note");
    note.setAttribute("role", "status");
    note.hidden = true;
    el.appendChild(head);
    el.appendChild(name);
    el.appendChild(args);
    el.appendChild(actions);
    el.appendChild(note);
    var expires = expiresAt ? new Date(expiresAt).getTime() : NaN;
    var card = { id: call.id, runId: runId, el: el, countdown: countdown, approve: approve, reject: reject, reason: reason,
                 note: note, expires: expires, ref: null, settled: false };
    approve.addEventListener("click", function () { self.decide(call.id, true); });
    reject.addEventListener("click", function () { self.decide(call.id, false); });
    reason.addEventListener("keydown", function (event) {
      if (event.key === "Enter" && !event.isComposing) {
        event.preventDefault();
        self.decide(call.id, false);
      }
    });
    return card;
  };

  NousApprovals.prototype._left = function (card) {
    return isNaN(card.expires) ? Infinity : card.expires - this.clock.now();
  };

  NousApprovals.prototype._open = function (card) {
    return this.canDecide() && !card.settled && this._left(card) > 0;
  };

  NousApprovals.prototype._note = function (card, text, isError) {
    card.note.textContent = text || "";
    card.note.hidden = !text;
    card.note.className = "approval-note" + (isError ? " error" : "");
  };

  NousApprovals.prototype._render = function (card) {
    var left = this._left(card);
    var expired = left <= 0;
    card.countdown.textContent = expired ? "expired" : (left === Infinity ? "" : "expires in " + formatLeft(left));
    card.el.dataset.state = expired ? "expired" : (card.ref ? "deciding" : "waiting");
    var disabled = !this._open(card) || !!card.ref;
    card.approve.disabled = card.reject.disabled = card.reason.disabled = disabled;
    if (!this.canDecide()) {
      var owner = this.options.owner;
      owner = typeof owner === "function" ? owner() : owner;
      card.reason.hidden = true;
      this._note(card, expired ? "" : "Waiting for " + (owner || "the owner") + " to approve", false);
    }
  };

  NousApprovals.prototype._tickSoon = function () {
    var self = this;
    if (this.timer !== null) return;
    // On the next whole second of the soonest countdown, so "4:32" turns into "4:31" on time.
    var next = 1000;
    Object.keys(this.cards).forEach(function (id) {
      var left = self._left(self.cards[id]);
      if (left > 0 && left !== Infinity) next = Math.min(next, (left % 1000) || 1000);
    });
    this.timer = this.clock.setTimeout(function () {
      self.timer = null;
      Object.keys(self.cards).forEach(function (id) { self._render(self.cards[id]); });
      var running = Object.keys(self.cards).some(function (id) { return self._left(self.cards[id]) > 0; });
      if (running) self._tickSoon();
    }, next + 5);
  };

  NousApprovals.prototype._stopTick = function () {
    if (this.timer === null) return;
    this.clock.clearTimeout(this.timer);
    this.timer = null;
  };

  if (typeof module === "object" && module.exports) module.exports = NousApprovals;
  if (root) root.NousApprovals = NousApprovals;
})(typeof window !== "undefined" ? window : null);
