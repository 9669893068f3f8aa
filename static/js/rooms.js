/* Nous Chat: the room page (PROTOCOL.md v1, room frames).
 *
 * Server data arrives through json_script "page-data"; everything else through the socket
 * (static/js/socket.js), one handler per frame type in `handlers`. Server text is rendered by
 * static/js/markdown.js or textContent, never through innerHTML.
 *
 * The pure parts (the typing line, the typing throttle) come first and are exported as
 * `NousRooms` (and as a CommonJS module for tests/js under `node --test`); the page code runs only
 * where there is a document with page data.
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

  var api = { typingLine: typingLine, TypingSender: TypingSender, TYPING_RESEND_MS: TYPING_RESEND_MS };
  if (typeof module === "object" && module.exports) module.exports = api;
  if (root) root.NousRooms = api;
  if (!root || !root.document || !root.document.getElementById("page-data")) return;

  // --- the page ---------------------------------------------------------------------------

  var data = JSON.parse(document.getElementById("page-data").textContent);
  var $ = function (id) { return document.getElementById(id); };
  var ui = {
    scroller: $("messages-scroll"),
    list: $("messages"),
    empty: $("empty-state"),
    input: $("composer"),
    form: $("composer-form"),
    send: $("send"),
    stop: $("stop"),
    status: $("status"),
    banner: $("error-banner"),
    bannerText: $("error-text"),
    dismiss: $("error-dismiss"),
    loadOlder: $("load-older"),
    jump: $("jump-latest"),
    title: $("room-title"),
    participants: $("participants"),
    typingLine: $("typing-line"),
    aiSwitch: $("ai-switch"),
    aiToggle: $("ai-toggle"),
    aiLabel: $("ai-label"),
    aiState: $("ai-state"),
    counter: $("char-count"),
  };

  var ROLE_NAMES = { system: "System", error: "Error", tool: "Tool" };
  var STICK_PX = 48;

  var state = {
    room: data.room,
    records: {},        // message id -> record
    runs: {},           // run_id -> the assistant record of that run
    activeRun: null,    // {run_id, status}
    pending: null,      // {client_id, content}: a message.send not answered yet
    refs: {},           // client_id of an edit/delete/toggle/stop/history frame -> what it was
    typers: [],         // user names typing now, in the order they started
    typerTimers: {},
    participants: [],
    hasMore: false,
    readyOnce: false,
    stick: true,
    dirty: [],
    frameRequested: false,
  };

  var util = window.NousPage;
  var uuid = util.uuid, make = util.make, number = util.number;

  function aiName() {
    return (state.room.settings && state.room.settings.ai_name) || "AI";
  }

  /* A frame that may be refused: its client_id comes back as the error's `ref`. */
  function sendWithRef(frame, what) {
    frame.client_id = uuid();
    if (!sock.send(frame)) {
      showBanner("Not connected; try again in a moment.");
      return null;
    }
    state.refs[frame.client_id] = what;
    return frame.client_id;
  }

  // --- messages ---------------------------------------------------------------------------

  /* A record is one bubble: {el, author, badge, time, content, actions, message, text, runId}. */
  function createRecord(message) {
    var record = util.bubble();
    record.actions = make("div", "message-actions");
    record.actions.hidden = true;
    record.el.appendChild(record.actions);
    Object.assign(record, { message: {}, text: "", runId: null, streamed: null, editing: null });
    applyMessage(record, message);
    return record;
  }

  function isMine(m) {
    return m.role === "user" && m.author === data.username && !!m.id;
  }

  function authorName(m) {
    if (m.role === "assistant") return aiName();
    if (m.role === "user") return m.author || "someone";
    return ROLE_NAMES[m.role] || m.role || "";
  }

  /* Copy a server message (or a partial one for a placeholder) onto a record and redraw it. */
  function applyMessage(record, message) {
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
    record.el.dataset.author = m.author || "";
    record.el.dataset.mine = isMine(m) ? "true" : "false";
    if (m.client_id) record.el.dataset.clientId = m.client_id;
    record.author.textContent = authorName(m);
    util.showBadgeAndTime(record, m);
    if (typeof message.content === "string") record.text = message.content;
    renderActions(record);
    if (!record.editing) draw(record);
    if (m.role === "assistant" && toolLines) toolLines.adopt(record);
    if (failedAnswers) failedAnswers.show(record);
  }

  var draw = util.draw;

  /* Edit and Delete, on one's own stored messages only. */
  function renderActions(record) {
    var mine = isMine(record.message);
    record.actions.hidden = !mine || !!record.editing;
    if (!mine || record.actions.childNodes.length) return;
    var edit = make("button", "link edit", "Edit");
    edit.type = "button";
    edit.addEventListener("click", function () { startEdit(record); });
    var del = make("button", "link danger-link delete", "Delete");
    del.type = "button";
    del.addEventListener("click", function () { deleteMessage(record); });
    record.actions.appendChild(edit);
    record.actions.appendChild(del);
  }

  function startEdit(record) {
    if (record.editing) return;
    var box = make("div", "edit-box");
    var area = make("textarea", "edit-input");
    area.value = record.text;
    area.setAttribute("aria-label", "Edit your message");
    var buttons = make("div");
    var save = make("button", "primary small-button save", "Save");
    save.type = "button";
    var cancel = make("button", "small-button cancel", "Cancel");
    cancel.type = "button";
    buttons.appendChild(cancel);
    buttons.appendChild(save);
    box.appendChild(area);
    box.appendChild(buttons);
    record.editing = { box: box, area: area, save: save, ref: null };
    record.content.textContent = "";
    record.content.appendChild(box);
    record.actions.hidden = true;
    area.focus();

    save.addEventListener("click", function () {
      var content = area.value.trim();
      if (!content) return;
      if (content === record.text) return endEdit(record);
      if (content.length > data.max_message_chars) {
        return showBanner("Messages are limited to " + number(data.max_message_chars) + " characters.");
      }
      var ref = sendWithRef({ type: "message.edit", id: record.message.id, content: content }, { kind: "edit", record: record });
      if (!ref) return;
      record.editing.ref = ref;
      save.disabled = true;
      save.textContent = "Saving…";
    });
    cancel.addEventListener("click", function () { endEdit(record); });
    area.addEventListener("keydown", function (event) {
      if (event.key === "Escape") endEdit(record);
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        save.click();
      }
    });
  }

  function endEdit(record) {
    if (!record.editing) return;
    if (record.editing.ref) delete state.refs[record.editing.ref];
    record.editing = null;
    draw(record);
    renderActions(record);
  }

  function deleteMessage(record) {
    if (!window.confirm("Delete this message?")) return;
    sendWithRef({ type: "message.delete", id: record.message.id }, { kind: "delete", record: record });
  }

  function removeRecord(id) {
    var record = state.records[id];
    if (!record) return;
    delete state.records[id];
    if (record.runId && state.runs[record.runId] === record) delete state.runs[record.runId];
    if (record.el.parentNode) record.el.parentNode.removeChild(record.el);
    ui.empty.hidden = ui.list.children.length > 0;
  }

  /* Streaming redraws once per animation frame, however many deltas arrived meanwhile. */
  var drawSoon = util.frameDrawer(state, draw, function () { afterContent(); });

  /* The bubbles in ui.list, by id and by run (static/js/page_util.js). */
  var bubbles = util.messageList(state, ui.list, ui.empty, createRecord, applyMessage);
  var runRecord = bubbles.runRecord, oldestId = bubbles.oldestId;
  /* Tool calls as a collapsed line under the run's answer (static/js/tools.js). */
  var toolLines = window.NousTools.create(function (runId) { return state.runs[runId] || null; });
  /* A failed answer is one bubble with its error (static/js/failed.js); Retry is the chat's. */
  var failedAnswers = window.NousFailed.create({
    records: function () { return state; }, uuid: uuid, failureText: util.failureText, canRetry: false, send: function () { return false; },
  });
  function upsert(message, where) {
    if (toolLines.stored(message)) return null;
    if (failedAnswers.absorb(message)) return null;  // shown in its failed answer's bubble
    return bubbles.upsert(message, where);
  }

  // --- scrolling --------------------------------------------------------------------------

  function atBottom() {
    var m = ui.scroller;
    return m.scrollHeight - m.scrollTop - m.clientHeight <= STICK_PX;
  }

  function afterContent() {
    if (state.stick) ui.scroller.scrollTop = ui.scroller.scrollHeight;
    ui.jump.hidden = state.stick;
  }

  ui.scroller.addEventListener("scroll", function () {
    state.stick = atBottom();
    if (state.stick) ui.jump.hidden = true;
  });
  ui.jump.addEventListener("click", function () {
    state.stick = true;
    afterContent();
  });

  // --- participants and typing ------------------------------------------------------------

  function showParticipants(names) {
    state.participants = (names || []).slice();
    ui.participants.textContent = "";
    state.participants.forEach(function (name) {
      var li = make("li", name === data.username ? "me" : null, name);
      li.dataset.user = name;
      ui.participants.appendChild(li);
    });
    // Someone who left is not typing any more.
    state.typers.filter(function (name) { return state.participants.indexOf(name) < 0; }).forEach(function (name) {
      setTyping(name, false);
    });
  }

  function setTyping(name, typing) {
    if (name === data.username) return;
    window.clearTimeout(state.typerTimers[name]);
    delete state.typerTimers[name];
    var at = state.typers.indexOf(name);
    if (typing) {
      if (at < 0) state.typers.push(name);
      state.typerTimers[name] = window.setTimeout(function () { setTyping(name, false); }, TYPING_EXPIRE_MS);
    } else if (at >= 0) {
      state.typers.splice(at, 1);
    }
    ui.typingLine.textContent = typingLine(state.typers, data.username);
  }

  function clearTypers() {
    state.typers.slice().forEach(function (name) { setTyping(name, false); });
  }

  var typing = new TypingSender(function (on) {
    return sock.send({ type: "typing", typing: on });
  }, { now: function () { return Date.now(); } });

  // --- composer ---------------------------------------------------------------------------

  function updateComposer() {
    var busy = !!state.pending;
    ui.input.readOnly = busy;
    ui.send.disabled = busy;
    ui.stop.hidden = !state.activeRun;
    var stopping = Object.keys(state.refs).some(function (ref) { return state.refs[ref].kind === "stop"; });
    ui.stop.disabled = stopping;
    ui.stop.textContent = stopping ? "Stopping…" : "Stop";
    ui.form.dataset.state = state.pending ? "sending" : state.activeRun ? "running" : "idle";
    ui.send.textContent = state.pending ? "Sending…" : "Send";
    updateCounter();
  }

  function updateCounter() {
    util.updateCounter(ui.counter, ui.input, data.max_message_chars);
  }

  function autoGrow() {
    util.autoGrow(ui.input);
  }

  /* Post a message: keep it pending (and the text in the composer) until the server answers. */
  function sendMessage() {
    var content = ui.input.value.trim();
    if (!content || state.pending) return;
    if (content.length > data.max_message_chars) {
      showBanner("Messages are limited to " + number(data.max_message_chars) + " characters.");
      return;
    }
    hideBanner();
    state.pending = { client_id: uuid(), content: content };
    typing.stop();
    transmitPending();
    updateComposer();
  }

  function transmitPending() {
    if (!state.pending) return;
    sock.send({ type: "message.send", content: state.pending.content, client_id: state.pending.client_id });
  }

  ui.form.addEventListener("submit", function (event) {
    event.preventDefault();
    sendMessage();
  });
  ui.input.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      sendMessage();
    }
  });
  ui.input.addEventListener("input", function () {
    autoGrow();
    updateCounter();
    if (!state.pending) typing.input(ui.input.value);
  });
  ui.stop.addEventListener("click", function () {
    if (!state.activeRun) return;
    sendWithRef({ type: "run.stop", run_id: state.activeRun.run_id }, { kind: "stop" });
    updateComposer();
  });

  // --- banner -----------------------------------------------------------------------------

  function showBanner(text) {
    ui.bannerText.textContent = text;
    ui.banner.hidden = false;
  }

  function hideBanner() {
    ui.banner.hidden = true;
  }

  ui.dismiss.addEventListener("click", hideBanner);

  // --- the room and its AI switch ---------------------------------------------------------

  function showRoom(room) {
    state.room = room;
    ui.title.textContent = room.title;
    document.title = room.title + " · Nous Chat";
    var s = room.settings || {};
    ui.aiToggle.checked = !!s.ai_active;
    ui.aiToggle.disabled = false;
    ui.aiLabel.textContent = aiName() + " answers";
    ui.aiState.textContent = data.is_owner ? "" : (s.ai_active ? aiName() + " answers when asked (@ai)" : aiName() + " is off");
    // Names of the AI's bubbles follow a rename.
    Object.keys(state.runs).forEach(function (runId) { state.runs[runId].author.textContent = aiName(); });
    ui.list.querySelectorAll('.message[data-role="assistant"]').forEach(function (el) {
      var record = state.records[el.dataset.id];
      if (record) record.author.textContent = aiName();
    });
  }

  ui.aiSwitch.hidden = !data.is_owner;
  ui.aiToggle.addEventListener("change", function () {
    var wanted = ui.aiToggle.checked;
    if (sendWithRef({ type: "ai.toggle", active: wanted }, { kind: "toggle" })) {
      ui.aiToggle.disabled = true;
    } else {
      ui.aiToggle.checked = !wanted;
    }
  });

  // --- history ----------------------------------------------------------------------------

  function showHasMore(hasMore) {
    state.hasMore = hasMore;
    ui.loadOlder.hidden = !hasMore;
  }

  var historyRef = null;
  ui.loadOlder.addEventListener("click", function () {
    var before = oldestId();
    if (!before || historyRef) return;
    historyRef = sendWithRef({ type: "history.load", before: before }, { kind: "history" });
    if (!historyRef) return;
    ui.loadOlder.disabled = true;
    ui.loadOlder.textContent = "Loading…";
  });

  function historyDone() {
    if (historyRef) delete state.refs[historyRef];
    historyRef = null;
    ui.loadOlder.disabled = false;
    ui.loadOlder.textContent = "Load older messages";
  }

  // --- runs -------------------------------------------------------------------------------

  function setActiveRun(run) {
    state.activeRun = run;
    if (!run) {
      Object.keys(state.refs).forEach(function (ref) { if (state.refs[ref].kind === "stop") delete state.refs[ref]; });
    }
    updateComposer();
  }

  var queuedNote = util.queuedNote;

  /* Tool calls waiting for the room's owner (static/js/approvals.js): a card under the run's
   * answer; everyone sees it, only the owner may decide. */
  var approvals = new window.NousApprovals(function (runId) {
    var record = runRecord(runId);
    if (!record.cards) {
      record.cards = make("div", "approval-cards");
      record.el.insertBefore(record.cards, record.actions);
    }
    return record.cards;
  }, function (frame) { return sock.send(frame); }, null, {
    canDecide: !!data.is_owner,
    owner: function () { return state.room.owner; },
  });

  /* A run ended: the stored message is the final word on its text. */
  function endRun(frame, message) {
    approvals.endRun(frame.run_id);
    var record = runRecord(frame.run_id);
    if (record.streamed !== null && message && record.streamed !== message.content) {
      record.el.dataset.resynced = "true";
      if (window.console) window.console.warn("run " + frame.run_id + ": streamed text differed from the stored message");
    }
    record.streamed = null;
    queuedNote(record, 0);
    if (message) applyMessage(record, message);
    else if (record.message.status === "streaming") applyMessage(record, { status: frame.type === "run.stopped" ? "stopped" : "failed" });
    if (state.activeRun && state.activeRun.run_id === frame.run_id) setActiveRun(null);
    afterContent();
    return record;
  }

  /* The frames of a run that both pages take alike (static/js/page_util.js). */
  var runFrames = util.runFrames({
    state: state, runRecord: runRecord, applyMessage: applyMessage, drawSoon: drawSoon,
    setActiveRun: setActiveRun, handlers: function () { return handlers; },
  });

  // --- frames -----------------------------------------------------------------------------

  var handlers = {
    "session.ready": function (frame) {
      if (frame.room) showRoom(frame.room);
      if (frame.user && frame.user.username) data.username = frame.user.username;
      typing.reset();
      clearTypers();
      showParticipants(frame.participants);
      var messages = frame.messages || [];
      var firstId = messages.length ? messages[0].id : null;
      // Messages deleted while we were away: anything shown at or after the page's first id
      // that the page no longer has.
      if (state.readyOnce && firstId !== null) {
        var present = {};
        messages.forEach(function (m) { present[m.id] = true; });
        Object.keys(state.records).forEach(function (id) {
          if (Number(id) >= Number(firstId) && !present[id] && !state.records[id].editing) removeRecord(id);
        });
      }
      var known = firstId && state.records[firstId];
      messages.forEach(function (m) { upsert(m); });
      if (!state.readyOnce || known && oldestId() === firstId || !oldestId()) showHasMore(!!frame.has_more);
      runFrames.sync(frame.active_run);
      // Exactly the calls still waiting keep (or get) their card, whatever the events showed.
      approvals.reset(frame.pending_approvals || []);
      if (state.pending) {
        var stored = messages.filter(function (m) { return m.client_id === state.pending.client_id; })[0];
        if (stored) handlers["message.created"]({ type: "message.created", message: stored });
        else transmitPending();  // never answered: the same client_id, so never stored twice
      }
      // Frames in flight on the old socket will never be answered.
      Object.keys(state.refs).forEach(function (ref) { if (state.refs[ref].kind !== "edit") delete state.refs[ref]; });
      historyDone();
      ui.aiToggle.disabled = false;
      ui.empty.hidden = ui.list.children.length > 0;
      state.readyOnce = true;
      state.stick = true;
      updateComposer();
      afterContent();
    },

    "message.created": function (frame) {
      var message = frame.message;
      var pending = state.pending;
      upsert(message);
      if (message.role === "user" && message.author) setTyping(message.author, false);
      if (pending && message.client_id === pending.client_id) {
        state.pending = null;
        if (ui.input.value.trim() === pending.content) {
          ui.input.value = "";
          autoGrow();
        }
        hideBanner();
        updateComposer();
        state.stick = true;
      }
      afterContent();
    },

    "message.updated": function (frame) {
      var message = frame.message;
      var record = state.records[message.id];
      if (!record) return;
      if (record.editing) endEdit(record);
      applyMessage(record, message);
    },

    "message.deleted": function (frame) {
      removeRecord(String(frame.id));
    },

    "run.queued": function (frame) {
      var record = runRecord(frame.run_id);
      queuedNote(record, frame.position);
      if (record.streamed === null) record.streamed = "";
      setActiveRun({ run_id: frame.run_id, status: "queued" });
      afterContent();
    },

    "run.started": function (frame) { runFrames.started(frame); },

    "run.delta": function (frame) { runFrames.delta(frame); },

    "run.completed": function (frame) {
      var message = frame.message ? Object.assign({}, frame.message, { usage: frame.message.usage || frame.usage }) : null;
      endRun(frame, message);
    },

    "run.stopped": function (frame) {
      endRun(frame, frame.message);
    },

    "run.failed": function (frame) {
      failedAnswers.runFailed(frame);
      var partial = frame.partial || null;
      endRun(frame, partial);
      var record = state.runs[frame.run_id];
      if (!partial && record && record.message.status === "streaming") applyMessage(record, { status: "failed" });
      if (frame.message && frame.message.role !== "assistant") upsert(frame.message);
      afterContent();
    },

    "run.approval_required": function (frame) {
      approvals.require(frame);
      afterContent();
    },

    "run.tool_call": function (frame) {
      runRecord(frame.run_id);
      toolLines.call(frame);
      afterContent();
    },

    "run.tool_result": function (frame) {
      approvals.resolve(frame.tool_call_id);
      toolLines.result(frame);
    },

    "typing": function (frame) {
      if (typeof frame.user === "string") setTyping(frame.user, !!frame.typing);
    },

    "presence": function (frame) {
      showParticipants(frame.participants);
    },

    "room.updated": function (frame) {
      Object.keys(state.refs).forEach(function (ref) { if (state.refs[ref].kind === "toggle") delete state.refs[ref]; });
      showRoom(frame.room);
    },

    "history": function (frame) {
      var m = ui.scroller;
      var fromBottom = m.scrollHeight - m.scrollTop;
      var messages = frame.messages || [];
      for (var i = messages.length - 1; i >= 0; i--) {
        if (!state.records[messages[i].id]) upsert(messages[i], "top");
      }
      showHasMore(!!frame.has_more);
      historyDone();
      // Keep what the user was reading where it was.
      m.scrollTop = m.scrollHeight - fromBottom;
    },

    "error": function (frame) {
      if (approvals.handleError(frame)) return;  // shown in the card of that tool call
      var ref = frame.ref;
      if (ref && state.pending && ref === state.pending.client_id) {
        var pending = state.pending;
        state.pending = null;
        // Nothing typed is lost: the text stays in (or comes back to) the composer.
        if (!ui.input.value.trim()) ui.input.value = pending.content;
        updateComposer();
        autoGrow();
        ui.input.focus();
        showBanner(frame.message);
        return;
      }
      var what = ref && state.refs[ref];
      if (what) {
        delete state.refs[ref];
        if (what.kind === "edit" && what.record.editing) {
          what.record.editing.ref = null;
          what.record.editing.save.disabled = false;
          what.record.editing.save.textContent = "Save";
        } else if (what.kind === "toggle") {
          ui.aiToggle.disabled = false;
          ui.aiToggle.checked = !!(state.room.settings && state.room.settings.ai_active);
        } else if (what.kind === "history") {
          historyDone();
        } else if (what.kind === "stop") {
          updateComposer();
          if (frame.code === "not_found") return;  // it ended by itself meanwhile
        }
      }
      showBanner(frame.message || "Something went wrong.");
    },

    "pong": function () {},
  };

  // --- connection -------------------------------------------------------------------------

  var ROOM_REFUSALS = { 4403: "You are not a member of this room", 4404: "This room does not exist" };

  function showStatus(name, info) {
    var text = util.statusText(name, info);
    if (name === "closed" && info.reason) text = ROOM_REFUSALS[info.code] || info.reason;
    ui.status.title = name === "reconnecting" && info.reason ? info.reason : "";
    ui.status.textContent = text;
    ui.status.dataset.state = name;
  }

  var sock = new window.NousSocket({
    path: data.ws_path,
    onStatus: function (name, info) {
      showStatus(name, info);
      if (name !== "connected") {
        // Whoever was typing may have stopped while we cannot hear it.
        clearTypers();
      }
      if (name === "closed" && info.code) {
        ui.input.disabled = ui.send.disabled = true;
        showBanner(ROOM_REFUSALS[info.code] || info.reason);
      }
    },
    onFrame: function (frame) {
      var handler = handlers[frame.type];
      if (handler) handler(frame);
      watchForStall(frame);
    },
  });

  /* A run silent for a while asks the server where it stands (static/js/page_util.js). */
  var watchForStall = util.stallWatcher(sock, function () { return state.activeRun; });

  util.wirePage(sock);

  // Under test, the page's state can be inspected; nothing here is an API.
  window.NousRoom = { state: state, socket: sock, typing: typing, approvals: approvals };

  showRoom(data.room);
  showParticipants([data.username]);
  updateComposer();
  sock.connect();
})(typeof window !== "undefined" ? window : null);
