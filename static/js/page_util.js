/* Nous Chat: the small helpers the chat page, the room page and their parts share (bubbles,
 * drawing, the counter, the status line, the stall watcher); what the two pages do alike on top of
 * them is static/js/message_page.js. Load it before the scripts that use it.
 *
 * Exported as `NousPage` (and as a CommonJS module under `node --test`). Server text goes in by
 * textContent (or static/js/markdown.js) only, never through innerHTML.
 */
(function (root) {
  "use strict";

  var STALL_MS = 15000;
  var STATUS_TEXT = { connecting: "Connecting…", connected: "Connected", reconnecting: "Reconnecting…", closed: "Offline" };
  var BADGES = { stopped: "stopped", failed: "failed", streaming: "writing…" };

  function uuid() {
    var crypto = (root || globalThis).crypto;
    if (crypto && crypto.randomUUID) return crypto.randomUUID();
    // Non-secure contexts (plain http on a LAN address) lack randomUUID.
    var bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    var hex = Array.prototype.map.call(bytes, function (b) { return (b + 0x100).toString(16).slice(1); }).join("");
    return hex.slice(0, 8) + "-" + hex.slice(8, 12) + "-" + hex.slice(12, 16) + "-" + hex.slice(16, 20) + "-" + hex.slice(20);
  }

  function make(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text != null) node.textContent = text;
    return node;
  }

  function formatTime(iso) {
    if (!iso) return "";
    var date = new Date(iso);
    if (isNaN(date.getTime())) return "";
    return date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  /* The line a failed run leaves: the server's message (or `fallback`), and for
   * `provider_unavailable` when the provider will be tried again (`retry_at`, in local time). */
  function failureText(error, fallback) {
    error = error || {};
    var message = error.message || fallback;
    var at = error.code === "provider_unavailable" && error.retry_at ? new Date(error.retry_at) : null;
    if (!at || isNaN(at.getTime())) return message;
    var time = at.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
    return message.replace(/[.\s]+$/, "") + "; it will be tried again at " + time;
  }

  function number(n) {
    return typeof n === "number" ? n.toLocaleString() : "0";
  }

  // --- message bubbles ----------------------------------------------------------------------

  /* The parts every bubble has: {el, author, badge, time, content}, the meta line (author, badge,
   * time) then the content; the page appends what only it has. */
  function bubble() {
    var article = make("article", "message");
    var meta = make("div", "meta");
    var author = make("span", "author");
    var badge = make("span", "badge");
    var time = make("time", "time");
    meta.appendChild(author);
    meta.appendChild(badge);
    meta.appendChild(time);
    var content = make("div", "content");
    article.appendChild(meta);
    article.appendChild(content);
    return { el: article, author: author, badge: badge, time: time, content: content };
  }

  /* The status badge and the time of a bubble, from its message `m`. */
  function showBadgeAndTime(record, m) {
    record.badge.textContent = BADGES[m.status] || "";
    record.badge.hidden = !BADGES[m.status];
    record.badge.className = "badge badge-" + (m.status || "complete");
    record.time.textContent = formatTime(m.created_at);
    if (m.created_at) record.time.setAttribute("datetime", m.created_at);
  }

  /* Copy a server message (or a partial one for a placeholder) onto a record: what every page
   * shows alike (ids, role, status, badge, time, text) and the record's place in `state.records`
   * and `state.runs`. Returns the merged message; the page draws the rest. */
  function takeMessage(state, record, message) {
    var m = record.message = Object.assign({}, record.message, message);
    if (m.id) {
      record.el.dataset.id = m.id;
      state.records[m.id] = record;
    }
    if (m.run_id) {
      record.runId = m.run_id;
      record.el.dataset.runId = m.run_id;
      if (m.role === "assistant") state.runs[m.run_id] = record;
    }
    record.el.dataset.role = m.role || "assistant";
    record.el.dataset.status = m.status || "complete";
    if (m.client_id) record.el.dataset.clientId = m.client_id;
    showBadgeAndTime(record, m);
    if (typeof message.content === "string") record.text = message.content;
    return m;
  }

  /* A bubble's text: markdown, or plain text for an error. */
  function draw(record) {
    record.content.textContent = "";
    if (record.message.role === "error") {
      record.content.appendChild(make("p", null, record.text));
    } else {
      record.content.appendChild(root.NousMarkdown.render(record.text));
    }
    record.el.classList.toggle("empty", !record.text);
  }

  /* `drawSoon(record)`: streaming redraws at most every DRAW_MS (and on an animation frame),
   * however many deltas arrived meanwhile, then `after()`. Each redraw renders the whole answer's
   * markdown again (static/js/markdown.js), so the text is formatted as it streams, at a bounded
   * cost. The records waiting are kept in `state.dirty`. */
  var DRAW_MS = 100;
  function frameDrawer(state, drawRecord, after) {
    var lastDraw = 0;
    return function drawSoon(record) {
      if (state.dirty.indexOf(record) < 0) state.dirty.push(record);
      if (state.frameRequested) return;
      state.frameRequested = true;
      var run = function () {
        state.frameRequested = false;
        lastDraw = Date.now();
        var dirty = state.dirty;
        state.dirty = [];
        dirty.forEach(drawRecord);
        after();
      };
      var wait = Math.max(0, DRAW_MS - (Date.now() - lastDraw));
      if (document.hidden || !window.requestAnimationFrame) window.setTimeout(run, Math.max(wait, 50));
      else if (wait > 0) window.setTimeout(function () { window.requestAnimationFrame(run); }, wait);
      else window.requestAnimationFrame(run);
    };
  }

  function queuedNote(record, position) {
    record.el.dataset.queued = position > 0 ? "Waiting for a free slot (" + position + " ahead)" : "";
  }

  /* The bubbles of a page in `list` (`empty` shows while there are none), by message id in
   * `state.records` and by run in `state.runs` (which `applyMessage` keeps). */
  function messageList(state, list, empty, createRecord, applyMessage) {
    function insert(record, where) {
      if (where === "top") list.insertBefore(record.el, list.firstChild);
      else list.appendChild(record.el);
      empty.hidden = true;
    }

    /* Show a server message: update its bubble if we have one (by id, or by run for a streaming
     * placeholder), else add one at the end (or at the top). */
    function upsert(message, where) {
      var record = message.id && state.records[message.id];
      if (!record && message.role === "assistant" && message.run_id) record = state.runs[message.run_id];
      if (record) {
        applyMessage(record, message);
        return record;
      }
      record = createRecord(message);
      insert(record, where);
      return record;
    }

    /* The assistant bubble of a run, made as a placeholder if the run has none yet. */
    function runRecord(runId) {
      var record = state.runs[runId];
      if (record) return record;
      record = createRecord({ role: "assistant", status: "streaming", content: "", run_id: runId, author: "assistant" });
      insert(record);
      return record;
    }

    function oldestId() {
      var first = list.querySelector(".message[data-id]");
      return first ? first.dataset.id : null;
    }

    return { upsert: upsert, runRecord: runRecord, oldestId: oldestId };
  }

  // --- composer ------------------------------------------------------------------------------

  /* "1,234 / 1,500" under the composer from 80 % of the limit on; class `over` past it. */
  function updateCounter(counter, input, max) {
    var length = input.value.length;
    counter.hidden = length < max * 0.8;
    counter.textContent = number(length) + " / " + number(max);
    counter.classList.toggle("over", length > max);
  }

  function autoGrow(input) {
    input.style.height = "auto";
    input.style.height = Math.min(input.scrollHeight, 240) + "px";
  }

  // --- connection ----------------------------------------------------------------------------

  /* The status line's text for a socket status; "closed" with a reason is the page's to word. */
  function statusText(name, info) {
    var text = STATUS_TEXT[name] || name;
    if (name === "reconnecting" && info.delay) text = "Reconnecting in " + Math.max(1, Math.round(info.delay / 1000)) + " s…";
    return text;
  }

  /* The channel layer may drop a frame; the run's end has no later delta to reveal the gap. A run
     silent for STALL_MS asks the server where it stands (`run.resume` answers with what was
     missed, and the end if the run has ended). `activeRun()` is the run watched, or null; the
     returned function takes every frame the page receives. */
  function stallWatcher(sock, activeRun) {
    var stallTimer = null;
    return function watchForStall(frame) {
      if (frame.run_id === undefined && frame.type !== "session.ready") return;
      if (stallTimer !== null) window.clearTimeout(stallTimer);
      stallTimer = null;
      if (!activeRun()) return;
      var runId = activeRun().run_id;
      stallTimer = window.setTimeout(function check() {
        if (!activeRun() || activeRun().run_id !== runId) return;
        sock.send({ type: "run.resume", run_id: runId, after_seq: sock.seqOf(runId) });
        stallTimer = window.setTimeout(check, STALL_MS);
      }, STALL_MS);
    };
  }

  /* The sidebar's toggle (narrow screens), and closing the socket quietly on leaving. */
  function wirePage(sock) {
    var $ = function (id) { return document.getElementById(id); };
    var layout = $("chat-layout"), toggle = $("sidebar-toggle");
    function openSidebar(open) {
      layout.classList.toggle("sidebar-open", open);
      toggle.setAttribute("aria-expanded", open ? "true" : "false");
    }
    toggle.addEventListener("click", function (event) {
      event.stopPropagation();
      openSidebar(!layout.classList.contains("sidebar-open"));
    });
    $("chat").addEventListener("click", function () { openSidebar(false); });

    window.addEventListener("online", function () { sock.reconnectNow(); });
    // Leaving (or reloading): close quietly instead of showing "Reconnecting" for a moment.
    window.addEventListener("pagehide", function () { sock.close("Leaving"); });
    window.addEventListener("pageshow", function (event) { if (event.persisted) window.location.reload(); });
  }

  var api = {
    uuid: uuid, make: make, formatTime: formatTime, failureText: failureText, number: number,
    bubble: bubble, messageList: messageList, showBadgeAndTime: showBadgeAndTime, takeMessage: takeMessage, draw: draw, frameDrawer: frameDrawer, queuedNote: queuedNote,
    updateCounter: updateCounter, autoGrow: autoGrow,
    statusText: statusText, stallWatcher: stallWatcher, wirePage: wirePage,
    STALL_MS: STALL_MS,
  };
  if (typeof module === "object" && module.exports) module.exports = api;
  if (root) root.NousPage = api;
})(typeof window !== "undefined" ? window : null);
