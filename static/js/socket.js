/* Nous Chat: the websocket of one page (PROTOCOL.md v1).
 *
 * `new NousSocket(options)` connects to ws(s)://<host><path>, reconnects with exponential back-off
 * and jitter, pings every 25 s, and keeps the stream of every run gapless: it remembers the last
 * `seq` received per run, drops a `run.delta` it has already seen, and asks `run.resume` when one
 * is missing. Timers come from `options.clock` ({setTimeout, clearTimeout, now}) so they can be
 * driven by a test; the WebSocket class from `options.WebSocket`.
 */
(function () {
  "use strict";

  var REFUSALS = {
    4401: { reason: "Please log in", login: true },
    4403: { reason: "You do not have access to this conversation" },
    4404: { reason: "This conversation does not exist" },
  };

  // A run's frames that carry its gapless `seq`: text deltas and tool events alike.
  var SEQ_FRAMES = { "run.delta": true, "run.tool_call": true, "run.tool_result": true, "run.approval_required": true };

  var browserClock = {
    setTimeout: function (fn, ms) { return window.setTimeout(fn, ms); },
    clearTimeout: function (id) { window.clearTimeout(id); },
    now: function () { return Date.now(); },
  };

  /* Full back-off for `attempt` (0 first) is base * 2^attempt capped at `cap`; the delay is
   * drawn from its upper half, so clients that dropped together do not come back together. */
  function backoff(attempt, random, base, cap) {
    var full = Math.min(cap, base * Math.pow(2, attempt));
    return Math.round(full / 2 + random() * (full / 2));
  }

  function socketUrl(loc, path) {
    return (loc.protocol === "https:" ? "wss://" : "ws://") + loc.host + path;
  }

  function NousSocket(options) {
    this.options = options;
    this.clock = options.clock || browserClock;
    this.random = options.random || Math.random;
    this.location = options.location || window.location;
    this.WebSocket = options.WebSocket || window.WebSocket;
    this.url = options.url || socketUrl(this.location, options.path);
    this.baseDelay = options.baseDelay || 500;
    this.maxDelay = options.maxDelay || 10000;
    this.pingInterval = options.pingInterval || 25000;
    this.pongTimeout = options.pongTimeout || 10000;
    this.ws = null;
    this.attempt = 0;
    this.ready = false;
    this.everReady = false;
    this.stopped = false;
    this.retryTimer = null;
    this.pingTimer = null;
    this.pongTimer = null;
    this.lastSeq = {};   // run_id -> the last delta seq handed to the page
    this.resumeAsked = {};  // run_id -> the after_seq of the run.resume in flight
  }

  NousSocket.backoff = backoff;
  NousSocket.socketUrl = socketUrl;

  NousSocket.prototype._status = function (state, info) {
    if (this.options.onStatus) this.options.onStatus(state, info || {});
  };

  NousSocket.prototype.connect = function () {
    var self = this;
    if (this.stopped) return;
    this._clearTimer("retryTimer");
    this._status(this.everReady || this.attempt > 0 ? "reconnecting" : "connecting", { attempt: this.attempt });
    var ws;
    try {
      ws = new this.WebSocket(this.url);
    } catch (err) {
      this._scheduleReconnect(0, String(err));
      return;
    }
    this.ws = ws;
    this.ready = false;
    ws.onmessage = function (event) { if (self.ws === ws) self._receive(event.data); };
    ws.onclose = function (event) { if (self.ws === ws) self._closed(event.code, event.reason); };
    ws.onerror = function () { /* a close event follows */ };
  };

  /* Reconnect now (e.g. the browser came back online) instead of waiting for the timer. */
  NousSocket.prototype.reconnectNow = function () {
    if (!this.stopped && this.retryTimer !== null) this.connect();
  };

  NousSocket.prototype.isOpen = function () {
    return this.ready && this.ws !== null && this.ws.readyState === 1;
  };

  /* Send a frame if the session is open; false if it is not (the caller keeps it for later). */
  NousSocket.prototype.send = function (frame) {
    if (!this.isOpen()) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  };

  NousSocket.prototype.close = function (reason) {
    this.stopped = true;
    this._stopTimers();
    var ws = this.ws;
    this.ws = null;
    this.ready = false;
    if (ws) {
      ws.onmessage = ws.onclose = ws.onerror = null;
      try { ws.close(1000); } catch (err) { /* already closed */ }
    }
    this._status("closed", { reason: reason || "Closed" });
  };

  NousSocket.prototype.seqOf = function (runId) {
    return this.lastSeq[runId] || 0;
  };

  NousSocket.prototype._receive = function (raw) {
    var frame;
    try { frame = JSON.parse(raw); } catch (err) { return; }
    if (!frame || typeof frame !== "object" || typeof frame.type !== "string") return;
    // Any frame proves the connection alive.
    this._clearTimer("pongTimer");
    if (frame.type === "pong") return;
    if (frame.type === "session.ready") {
      this.ready = true;
      this.everReady = true;
      this.attempt = 0;
      this.resumeAsked = {};
      var active = frame.active_run;
      // The snapshot holds every delta up to active_run.seq; live deltas continue after it.
      if (active && active.run_id) this.lastSeq[active.run_id] = active.seq || 0;
      this._schedulePing();
      this._status("connected", {});
    } else if (SEQ_FRAMES[frame.type]) {
      if (!this._acceptDelta(frame)) return;
    }
    if (this.options.onFrame) this.options.onFrame(frame);
  };

  /* true: hand the run frame to the page. false: a duplicate (dropped) or after a gap (resume asked). */
  NousSocket.prototype._acceptDelta = function (frame) {
    var runId = frame.run_id, seq = frame.seq, last = this.lastSeq[runId] || 0;
    if (typeof seq !== "number" || seq <= last) return false;
    if (seq > last + 1) {
      if (this.resumeAsked[runId] !== last) {
        this.resumeAsked[runId] = last;
        this.send({ type: "run.resume", run_id: runId, after_seq: last });
      }
      return false;
    }
    this.lastSeq[runId] = seq;
    delete this.resumeAsked[runId];
    return true;
  };

  NousSocket.prototype._closed = function (code, reason) {
    this.ws = null;
    this.ready = false;
    this._stopTimers();
    if (this.stopped) return;
    var refusal = REFUSALS[code];
    if (refusal) {
      this.stopped = true;
      this._status("closed", { code: code, reason: refusal.reason });
      if (refusal.login) {
        var next = this.location.pathname + (this.location.search || "");
        var go = this.options.redirect || function (url) { window.location.assign(url); };
        go("/accounts/login/?next=" + encodeURIComponent(next));
      }
      return;
    }
    this._scheduleReconnect(code, code === 4429 ? "Too many open tabs" : reason);
  };

  NousSocket.prototype._scheduleReconnect = function (code, reason) {
    var self = this;
    var delay = backoff(this.attempt, this.random, this.baseDelay, this.maxDelay);
    this.attempt += 1;
    this._status("reconnecting", { code: code, reason: reason || "", delay: delay, attempt: this.attempt });
    this.retryTimer = this.clock.setTimeout(function () {
      self.retryTimer = null;
      self.connect();
    }, delay);
  };

  NousSocket.prototype._schedulePing = function () {
    var self = this;
    this._clearTimer("pingTimer");
    this.pingTimer = this.clock.setTimeout(function () {
      self.pingTimer = null;
      if (!self.isOpen()) return;
      self.ws.send(JSON.stringify({ type: "ping" }));
      self._clearTimer("pongTimer");
      self.pongTimer = self.clock.setTimeout(function () {
        self.pongTimer = null;
        self._dropDead();
      }, self.pongTimeout);
      self._schedulePing();
    }, this.pingInterval);
  };

  /* No answer to a ping: the connection is dead even if the browser has not noticed. */
  NousSocket.prototype._dropDead = function () {
    var ws = this.ws;
    if (!ws) return;
    ws.onmessage = ws.onclose = ws.onerror = null;
    try { ws.close(4000, "no pong"); } catch (err) { /* ignore */ }
    this._closed(1006, "No answer from the server");
  };

  NousSocket.prototype._clearTimer = function (name) {
    if (this[name] !== null) {
      this.clock.clearTimeout(this[name]);
      this[name] = null;
    }
  };

  NousSocket.prototype._stopTimers = function () {
    this._clearTimer("retryTimer");
    this._clearTimer("pingTimer");
    this._clearTimer("pongTimer");
  };

  window.NousSocket = NousSocket;
})();
