/* Nous Chat: the room page (PROTOCOL.md v1, room frames).
 *
 * Server data arrives through json_script "page-data"; everything else through the socket
 * (static/js/socket.js), one handler per frame type in `handlers`. What the chat page does alike
 * (banner, scrolling, composer, history, the frames of a run) is static/js/message_page.js; the
 * title, who is here and the AI switch are static/js/room_info.js, who is typing
 * static/js/typing.js, editing one's messages static/js/room_edits.js. Server text is rendered by
 * static/js/markdown.js or textContent, never through innerHTML.
 */
(function () {
  "use strict";

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
    typingLine: $("typing-line"),
    counter: $("char-count"),
  };

  var ROLE_NAMES = { system: "System", error: "Error", tool: "Tool" };

  var state = {
    room: data.room,
    records: {},        // message id -> record
    runs: {},           // run_id -> the assistant record of that run
    activeRun: null,    // {run_id, status, position}
    pending: null,      // {client_id, content}: a message.send not answered yet
    refs: {},           // client_id of an edit/delete/toggle/stop/history frame -> what it was
    participants: [],
    hasMore: false,
    readyOnce: false,
    stick: true,
    dirty: [],
    frameRequested: false,
  };

  var util = window.NousPage;
  var shared = window.NousMessagePage;
  var uuid = util.uuid, make = util.make;
  var banner = shared.banner(ui);  // the notice above the messages

  /* A frame that may be refused: its client_id comes back as the error's `ref`. */
  function sendWithRef(frame, what) {
    frame.client_id = uuid();
    if (!sock.send(frame)) {
      banner.show("Not connected; try again in a moment.");
      return null;
    }
    state.refs[frame.client_id] = what;
    return frame.client_id;
  }

  function forgetRefs(kind) {
    Object.keys(state.refs).forEach(function (ref) { if (state.refs[ref].kind === kind) delete state.refs[ref]; });
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
    if (m.role === "assistant") return roomInfo.aiName();
    if (m.role === "user") return m.author || "someone";
    return ROLE_NAMES[m.role] || m.role || "";
  }

  /* Copy a server message (or a partial one for a placeholder) onto a record and redraw it. */
  function applyMessage(record, message) {
    var m = util.takeMessage(state, record, message);
    record.el.dataset.author = m.author || "";
    record.el.dataset.mine = isMine(m) ? "true" : "false";
    record.author.textContent = authorName(m);
    edits.renderActions(record);
    if (!record.editing) draw(record);
    if (m.role === "assistant" && toolLines) toolLines.adopt(record);
    if (failedAnswers) failedAnswers.show(record);
  }

  var draw = util.draw;

  /* Edit and Delete on one's own messages (static/js/room_edits.js). */
  var edits = window.NousRoomEdits.create({
    state: state, isMine: isMine, send: sendWithRef, banner: banner,
    maxChars: data.max_message_chars, draw: draw,
  });

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
    records: function () { return state; }, failureText: util.failureText,
  });
  function upsert(message, where) {
    if (toolLines.stored(message)) return null;
    if (failedAnswers.absorb(message)) return null;  // shown in its failed answer's bubble
    return bubbles.upsert(message, where);
  }

  // --- scrolling (static/js/message_page.js) ------------------------------------------------

  var afterContent = shared.scrolling(state, ui.scroller, ui.jump).afterContent;

  // --- the room (static/js/room_info.js), typing (static/js/typing.js) ------------------------

  var typers = new window.NousTyping.Typers(ui.typingLine, function () { return data.username; });
  var roomInfo = window.NousRoomInfo.create({ state: state, data: data, list: ui.list, typers: typers, sendWithRef: sendWithRef });
  var showParticipants = roomInfo.showParticipants, showRoom = roomInfo.showRoom;

  var typing = new window.NousTyping.TypingSender(function (on) {
    return sock.send({ type: "typing", typing: on });
  }, { now: function () { return Date.now(); } });

  // --- composer (static/js/message_page.js) --------------------------------------------------

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
    composer.updateCounter();
  }

  var composer = shared.composer({
    state: state, form: ui.form, input: ui.input, counter: ui.counter, maxChars: data.max_message_chars,
    banner: banner, send: function (frame) { return sock.send(frame); }, update: updateComposer,
    blocked: function (content) { return !content; },
    beforeSend: function () { typing.stop(); },
    onInput: function () { if (!state.pending) typing.input(ui.input.value); },
  });

  ui.stop.addEventListener("click", function () {
    if (!state.activeRun) return;
    sendWithRef({ type: "run.stop", run_id: state.activeRun.run_id }, { kind: "stop" });
    updateComposer();
  });

  // --- history, runs (static/js/message_page.js) ----------------------------------------------

  var older = shared.olderPages({
    state: state, button: ui.loadOlder, scroller: ui.scroller, oldestId: oldestId, upsert: upsert,
    request: function (frame) { return sendWithRef(frame, { kind: "history" }); },
    forget: function (ref) { delete state.refs[ref]; },
  });

  function setActiveRun(run) {
    state.activeRun = run;
    if (!run) forgetRefs("stop");
    updateComposer();
  }

  /* Tool calls waiting for the room's owner (static/js/approvals.js): a card under the run's
   * answer; everyone sees it, only the owner may decide. */
  var approvals = new window.NousApprovals(shared.approvalCards(runRecord, "actions"), function (frame) { return sock.send(frame); }, null, {
    canDecide: !!data.is_owner,
    owner: function () { return state.room.owner; },
  });

  /* The frames of a run, from queued to its end; an answer left streaming by a run that ended
   * without a message is marked stopped or failed. */
  var runFrames = shared.runFrames({
    state: state, runRecord: runRecord, applyMessage: applyMessage, drawSoon: drawSoon,
    setActiveRun: setActiveRun, afterContent: afterContent, markUnfinished: true,
    approvals: function () { return approvals; }, handlers: function () { return handlers; },
  });

  // --- frames -----------------------------------------------------------------------------

  var handlers = {
    "session.ready": function (frame) {
      if (frame.room) showRoom(frame.room);
      if (frame.user && frame.user.username) data.username = frame.user.username;
      typing.reset();
      typers.clear();
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
      if (!state.readyOnce || known && oldestId() === firstId || !oldestId()) older.showHasMore(!!frame.has_more);
      runFrames.sync(frame.active_run);
      // Exactly the calls still waiting keep (or get) their card, whatever the events showed.
      approvals.reset(frame.pending_approvals || []);
      composer.resend(messages, handlers["message.created"]);
      // Frames in flight on the old socket will never be answered.
      Object.keys(state.refs).forEach(function (ref) { if (state.refs[ref].kind !== "edit") delete state.refs[ref]; });
      older.done();
      roomInfo.ready();
      ui.empty.hidden = ui.list.children.length > 0;
      state.readyOnce = true;
      state.stick = true;
      updateComposer();
      afterContent();
    },

    "message.created": function (frame) {
      var message = frame.message;
      upsert(message);
      if (message.role === "user" && message.author) typers.set(message.author, false);
      var pending = composer.stored(message);
      if (pending) {
        composer.clearSent(pending);
        banner.hide();
        updateComposer();
        state.stick = true;
      }
      afterContent();
    },

    "message.updated": function (frame) {
      var message = frame.message;
      var record = state.records[message.id];
      if (!record) return;
      if (record.editing) edits.endEdit(record);
      applyMessage(record, message);
    },

    "message.deleted": function (frame) {
      removeRecord(String(frame.id));
    },

    "run.queued": function (frame) { runFrames.queued(frame); },

    "run.started": function (frame) { runFrames.started(frame); },

    "run.delta": function (frame) { runFrames.delta(frame); },

    "run.completed": function (frame) {
      var message = frame.message ? Object.assign({}, frame.message, { usage: frame.message.usage || frame.usage }) : null;
      runFrames.end(frame, message);
    },

    "run.stopped": function (frame) {
      runFrames.end(frame, frame.message);
    },

    "run.failed": function (frame) {
      failedAnswers.runFailed(frame);
      var partial = frame.partial || null;
      runFrames.end(frame, partial);
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
      if (typeof frame.user === "string") typers.set(frame.user, !!frame.typing);
    },

    "presence": function (frame) {
      showParticipants(frame.participants);
    },

    "room.updated": function (frame) {
      forgetRefs("toggle");
      showRoom(frame.room);
    },

    "history": function (frame) { older.show(frame); },

    "error": function (frame) {
      if (approvals.handleError(frame)) return;  // shown in the card of that tool call
      if (composer.refused(frame)) return;  // the text is back in the composer, the reason in the banner
      var ref = frame.ref;
      var what = ref && state.refs[ref];
      if (what) {
        delete state.refs[ref];
        if (what.kind === "edit") {
          edits.refused(what.record);  // the editor stays open
        } else if (what.kind === "toggle") {
          roomInfo.toggleRefused();
        } else if (what.kind === "history") {
          older.done();
        } else if (what.kind === "stop") {
          updateComposer();
          if (frame.code === "not_found") return;  // it ended by itself meanwhile
        }
      }
      banner.show(frame.message || "Something went wrong.");
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

  var sock = shared.connection({
    path: data.ws_path, state: state, handlers: function () { return handlers; },
    onStatus: function (name, info) {
      showStatus(name, info);
      if (name !== "connected") {
        // Whoever was typing may have stopped while we cannot hear it.
        typers.clear();
      }
      if (name === "closed" && info.code) {
        ui.input.disabled = ui.send.disabled = true;
        banner.show(ROOM_REFUSALS[info.code] || info.reason);
      }
    },
  });

  // Under test, the page's state can be inspected; nothing here is an API.
  window.NousRoom = { state: state, socket: sock, typing: typing, approvals: approvals };

  showRoom(data.room);
  showParticipants([data.username]);
  updateComposer();
  sock.connect();
})();
