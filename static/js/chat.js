/* Nous Chat: the conversation page.
 *
 * Server data arrives through json_script "page-data"; everything else through the socket
 * (static/js/socket.js), one handler per frame type in `handlers`. What the room page does alike
 * (banner, scrolling, composer, history, the frames of a run) is static/js/message_page.js; the
 * header and settings are static/js/chat_settings.js. Server text is rendered by
 * static/js/markdown.js or textContent, never through innerHTML.
 */
(function () {
  "use strict";

  var data = JSON.parse(document.getElementById("page-data").textContent);
  var $ = function (id) { return document.getElementById(id); };
  var ui = {
    messages: $("messages"),
    list: $("message-list"),
    empty: $("empty-state"),
    input: $("input"),
    composer: $("composer"),
    send: $("send"),
    stop: $("stop"),
    status: $("status"),
    banner: $("error-banner"),
    bannerText: $("error-text"),
    dismiss: $("error-dismiss"),
    loadOlder: $("load-older"),
    jump: $("jump-latest"),
    counter: $("char-count"),
  };

  var ROLE_NAMES = { user: null, assistant: "Assistant", system: "System", error: "Error", tool: "Tool" };

  var state = {
    conversation: data.conversation,
    records: {},       // message id -> record
    runs: {},          // run_id -> the assistant record of that run
    activeRun: null,   // {run_id, status, position}
    pending: null,     // {client_id, content, attachments}: a message.send not answered yet
    expectRun: false,  // our message was stored; its run.queued is on its way
    stopRef: null,
    hasMore: false,
    readyOnce: false,
    stick: true,
    dirty: [],
    frameRequested: false,
  };

  var util = window.NousPage;
  var shared = window.NousMessagePage;
  var uuid = util.uuid, make = util.make;
  var answerNotes = window.NousAnswerNotes;
  function send(frame) { return sock.send(frame); }

  // --- messages ---------------------------------------------------------------------------

  /* A record is one bubble: {el, content, badge, usage, message, text, runId}. */
  function createRecord(message) {
    var record = util.bubble();
    record.usage = make("div", "usage");
    record.el.appendChild(record.usage);
    Object.assign(record, { message: {}, text: "", runId: null, streamed: null });
    applyMessage(record, message);
    return record;
  }

  /* Copy a server message (or a partial one for a placeholder) onto a record and redraw it. */
  function applyMessage(record, message) {
    var m = util.takeMessage(state, record, message);
    var name = ROLE_NAMES[m.role];
    record.author.textContent = name === null || name === undefined ? (m.author || "You") : name;
    if (m.role === "user" && m.author === data.username) record.author.textContent = "You";
    answerNotes.renderUsage(record);
    answerNotes.render(record);
    draw(record);
    if (branchUi) branchUi.decorate(record);
    window.NousAttachments.show(record, message.attachments);
    pageParts.show(record);
  }

  var draw = util.draw;

  /* The failed-answer part (static/js/failed.js), the provenance button (static/js/provenance.js)
   * and the keyboard / screen-reader behaviour (static/js/a11y.js) of the bubbles. */
  var failedAnswers = window.NousFailed.create({
    records: function () { return state; }, failureText: util.failureText,
    // Retry is the branches' regenerate: one sender, and their controls wait for its run too.
    regenerate: function (id, record) { return branchUi.regenerate(id, record); },
  });
  var pageParts = { show: function (record) { failedAnswers.show(record); window.NousProvenance.show(record); } };
  var a11y = window.NousA11y.create({
    input: ui.input, composer: ui.composer, live: $("answer-live"),
    streaming: function () { return !!state.activeRun; },
    stop: function () { ui.stop.click(); },
  });

  /* Streaming redraws once per animation frame, however many deltas arrived meanwhile. */
  var drawSoon = util.frameDrawer(state, draw, function () { afterContent(); });

  /* The bubbles in ui.list, by id and by run (static/js/page_util.js). */
  var bubbles = util.messageList(state, ui.list, ui.empty, createRecord, applyMessage);
  var runRecord = bubbles.runRecord, oldestId = bubbles.oldestId;

  /* Tool calls, a line each (static/js/chat_tools.js). */
  var tools = window.NousChatTools.create({ state: state, upsert: upsert, applyMessage: applyMessage });

  /* Show a server message: update its bubble if we have one, else add one at the end. */
  function upsert(message, where) {
    message = tools.shown(message);
    if (failedAnswers.absorb(message)) return null;  // shown in its failed answer's bubble
    return bubbles.upsert(message, where);
  }

  // --- scrolling, banner, composer (static/js/message_page.js) -----------------------------

  var scrolling = shared.scrolling(state, ui.messages, ui.jump);
  var afterContent = scrolling.afterContent;

  /* A notice above the messages. (A failed answer's Retry is in its bubble: static/js/failed.js.) */
  var banner = shared.banner(ui);

  /* Pending uploads (static/js/attachments.js): sent with the next message. */
  var files = new window.NousAttachments.Composer(data.attachments, { button: $("attach"), input: $("attach-input"),
    chips: $("attachment-chips"), error: $("attach-error") }, function () { updateComposer(); });

  function runActive() {
    return !!state.activeRun || state.expectRun;
  }

  function updateComposer() {
    var busy = runActive() || !!state.pending;
    ui.input.disabled = busy;
    ui.send.disabled = busy || files.uploading();
    ui.stop.hidden = !state.activeRun;
    ui.stop.disabled = !!state.stopRef;
    ui.stop.textContent = state.stopRef ? "Stopping…" : "Stop";
    ui.composer.dataset.state = state.activeRun ? "running" : state.pending ? "sending" : "idle";
    if (state.pending) ui.send.textContent = "Sending…";
    else ui.send.textContent = "Send";
    if (branchUi) branchUi.setBusy(busy);
    composer.updateCounter();
  }

  /* A message (with the files attached) waits for no upload and no run. */
  var composer = shared.composer({
    state: state, form: ui.composer, input: ui.input, counter: ui.counter, maxChars: data.max_message_chars,
    banner: banner, send: send, update: updateComposer,
    blocked: function (content) { return (!content && !files.items.length) || files.uploading() || runActive(); },
    extra: function () { return { attachments: files.ids() }; },
  });

  ui.stop.addEventListener("click", function () {
    if (!state.activeRun || state.stopRef) return;
    state.stopRef = uuid();
    if (!sock.send({ type: "run.stop", run_id: state.activeRun.run_id, client_id: state.stopRef })) state.stopRef = null;
    updateComposer();
  });

  // --- header, settings (static/js/chat_settings.js), history --------------------------------

  var settings = window.NousChatSettings.create({ state: state, send: send, uuid: uuid });
  var showConversation = settings.showConversation;

  var older = shared.olderPages({
    state: state, button: ui.loadOlder, scroller: ui.messages, oldestId: oldestId, upsert: upsert,
    request: function (frame) {
      frame.client_id = uuid();
      return sock.send(frame) ? frame.client_id : null;
    },
  });

  // --- runs -------------------------------------------------------------------------------

  /* Our message was stored: its run.queued follows at once. Until then the composer stays
   * locked; a run that never shows up unlocks it after a while. */
  var expectTimer = null;
  function expectRun(on) {
    state.expectRun = on;
    window.clearTimeout(expectTimer);
    if (on) {
      expectTimer = window.setTimeout(function () {
        state.expectRun = false;
        updateComposer();
      }, 10000);
    }
  }

  function setActiveRun(run) {
    state.activeRun = run;
    expectRun(false);
    if (!run) state.stopRef = null;
    updateComposer();
    if (run && state.runs[run.run_id]) a11y.answerStarted(state.runs[run.run_id]);
  }

  /* Tool calls waiting for the owner (static/js/approvals.js): a card under the run's answer. */
  var approvals = new window.NousApprovals(shared.approvalCards(runRecord, "usage"), send, null, { canDecide: true });

  /* The frames of a run, from queued to its end (static/js/message_page.js). */
  var runFrames = shared.runFrames({
    state: state, runRecord: runRecord, applyMessage: applyMessage, drawSoon: drawSoon,
    setActiveRun: setActiveRun, afterContent: afterContent,
    approvals: function () { return approvals; }, handlers: function () { return handlers; },
    ended: function (record, frame, wasActive) {
      a11y.answerEnded(record, frame.type.slice(4), frame.error && frame.error.message);
      if (wasActive) a11y.restoreFocus();
    },
  });

  // --- branches (static/js/branches.js) -----------------------------------------------------

  var branchUi = new window.NousBranches(ui.list, send, {
    onError: function (text) { banner.show(text, false); },
  });

  /* The list starts again: another branch is shown. */
  function clearList() {
    ui.list.textContent = "";
    state.records = {};
    state.runs = {};
  }

  /* `branch.switched`: the newest page of the branch now selected replaces the list. */
  function showBranch(frame) {
    clearList();
    (frame.messages || []).forEach(function (m) { upsert(m); });
    older.showHasMore(frame.has_more);
    ui.empty.hidden = ui.list.children.length > 0;
    var ours = branchUi.switched(frame);
    if (failedAnswers.switched(frame) || ours) {
      expectRun(true);  // our regenerate or edit: its run.queued follows
      banner.hide();
    }
    state.stick = true;
    updateComposer();
    afterContent();
  }

  // --- frames -----------------------------------------------------------------------------

  var handlers = {
    "session.ready": function (frame) {
      showConversation(frame.conversation);
      settings.showSettings(frame.conversation.settings || {}, false);
      expectRun(false);
      var messages = frame.messages || [];
      if (state.readyOnce && branchUi.showsAnotherBranch(messages)) clearList();
      var firstId = messages.length ? messages[0].id : null;
      var known = firstId && state.records[firstId];
      messages.forEach(function (m) { upsert(m); });
      // After a reconnect the older pages loaded before are still shown; keep their has_more.
      if (!state.readyOnce || known && oldestId() === firstId || !oldestId()) older.showHasMore(frame.has_more);
      runFrames.sync(frame.active_run);
      // Exactly the calls still waiting keep (or get) their card, whatever the events showed.
      approvals.reset(frame.pending_approvals || []);
      composer.resend(messages, handlers["message.created"]);
      ui.empty.hidden = ui.list.children.length > 0;
      state.readyOnce = true;
      state.stick = true;
      updateComposer();
      afterContent();
    },

    "message.created": function (frame) {
      var message = frame.message;
      var isNew = !state.records[message.id];
      upsert(message);
      var pending = composer.stored(message);
      if (pending) {
        files.clear();
        composer.clearSent(pending);
        expectRun(isNew && !state.activeRun);
        if (!state.conversation.title && message.role === "user") {
          var line = message.content.split(/\s+/).join(" ").trim();
          showConversation(Object.assign({}, state.conversation, { title: line.length <= 60 ? line : line.slice(0, 57).trim() + "..." }));
        }
        banner.hide();
        updateComposer();
      }
      state.stick = state.stick || message.role === "user";
      afterContent();
    },

    "run.queued": function (frame) { runFrames.queued(frame); },

    "run.started": function (frame) { runFrames.started(frame); },

    "run.delta": function (frame) { runFrames.delta(frame); },

    "run.completed": function (frame) {
      var message = Object.assign({}, frame.message, { usage: frame.message.usage || frame.usage });
      runFrames.end(frame, message);
      var usage = state.conversation.usage;
      if (usage && frame.usage) {
        showConversation(Object.assign({}, state.conversation, { usage: {
          input_tokens: usage.input_tokens + frame.usage.input_tokens,
          output_tokens: usage.output_tokens + frame.usage.output_tokens,
          total_tokens: usage.total_tokens + frame.usage.total_tokens,
        } }));
      }
    },

    "run.stopped": function (frame) {
      runFrames.end(frame, frame.message);
    },

    "run.failed": function (frame) {
      // One bubble: the partial answer, the error and Retry (static/js/failed.js).
      failedAnswers.runFailed(frame);
      var partial = frame.partial || null;
      runFrames.end(frame, partial);
      var runRecordOf = state.runs[frame.run_id];
      if (!partial && runRecordOf) applyMessage(runRecordOf, { status: "failed" });
      if (frame.message && frame.message.role !== "assistant") upsert(frame.message);
      afterContent();
    },

    "run.tool_call": function (frame) { tools.call(frame); },

    "run.approval_required": function (frame) {
      approvals.require(frame);
      afterContent();
    },

    "run.tool_result": function (frame) {
      approvals.resolve(frame.tool_call_id);
      tools.result(frame);
    },

    "conversation.updated": function (frame) { settings.updated(frame); },

    "history": function (frame) { older.show(frame); },

    "branch.switched": showBranch,

    "error": function (frame) {
      if (approvals.handleError(frame)) return;  // shown in the card of that tool call
      if (failedAnswers.handleError(frame)) {  // a refused Retry, shown in its bubble
        branchUi.handleError(frame, true);  // the branches' controls are free again
        return;
      }
      if (branchUi.handleError(frame)) return;  // a refused regenerate or edit
      if (composer.refused(frame)) return;  // the text is back in the input, the reason in the banner
      if (settings.handleError(frame)) return;  // shown under the settings form
      var ref = frame.ref;
      if (older.isOurs(ref)) {
        older.done();
        banner.show(frame.message);
        return;
      }
      if (ref && ref === state.stopRef) {
        state.stopRef = null;
        updateComposer();
        if (frame.code === "not_found") return;  // it ended by itself meanwhile
      }
      banner.show(frame.message);
    },

    "typing": function () {},
    "pong": function () {},
  };

  /* A linked message (?message=<id>, from the search page): static/js/linked_message.js. */
  var followLinkedMessage = window.NousLinkedMessage.create({
    state: state, older: older, oldestId: oldestId, atBottom: scrolling.atBottom, jump: ui.jump, loadOlder: ui.loadOlder,
  });

  // --- connection -------------------------------------------------------------------------

  function showStatus(name, info) {
    var text = util.statusText(name, info);
    if (name === "closed" && info.reason) text = info.reason;
    if (name === "reconnecting" && info.reason) ui.status.title = info.reason;
    ui.status.textContent = text;
    ui.status.dataset.state = name;
  }

  var sock = shared.connection({
    path: data.ws_path, state: state, handlers: function () { return handlers; },
    onStatus: function (name, info) {
      showStatus(name, info);
      if (name === "closed" && info.code) {
        ui.input.disabled = ui.send.disabled = true;
        banner.show(info.reason);
      }
    },
    afterFrame: function (frame) { followLinkedMessage(frame); },
  });

  // Under test, the page's state can be inspected; nothing here is an API.
  window.NousChat = { state: state, socket: sock, approvals: approvals };

  showConversation(data.conversation);
  settings.showSettings(data.conversation.settings || {}, true);
  updateComposer();
  sock.connect();
})();
