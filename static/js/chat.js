/* Nous Chat: the conversation page.
 *
 * Server data arrives through json_script "page-data"; everything else through the socket
 * (static/js/socket.js), one handler per frame type in `handlers`. Server text is rendered by
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
    title: $("conversation-title"),
    usage: $("conversation-usage"),
    counter: $("char-count"),
    settingsForm: $("settings-form"),
    settingsPanel: $("settings-panel"),
    model: $("settings-model"),
    instructions: $("settings-instructions"),
    temperature: $("settings-temperature"),
    maxTokens: $("settings-max-tokens"),
    fallbackModels: $("settings-fallback-models"),
    settingsSave: $("settings-save"),
    settingsNote: $("settings-note"),
    settingsIgnored: $("settings-ignored"),
  };

  var ROLE_NAMES = { user: null, assistant: "Assistant", system: "System", error: "Error", tool: "Tool" };
  var STICK_PX = 48;

  var state = {
    conversation: data.conversation,
    records: {},       // message id -> record
    runs: {},          // run_id -> the assistant record of that run
    activeRun: null,   // {run_id, status, position}
    pending: null,     // {client_id, content, fromInput}: a message.send not answered yet
    expectRun: false,  // our message was stored; its run.queued is on its way
    stopRef: null,
    settingsRef: null,
    settingsDirty: false,
    historyRef: null,
    hasMore: false,
    readyOnce: false,
    stick: true,
    dirty: [],
    frameRequested: false,
  };

  var util = window.NousPage;
  var uuid = util.uuid, make = util.make, number = util.number;
  var answerNotes = window.NousAnswerNotes;

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
    var name = ROLE_NAMES[m.role];
    record.author.textContent = name === null || name === undefined ? (m.author || "You") : name;
    if (m.role === "user" && m.author === data.username) record.author.textContent = "You";
    util.showBadgeAndTime(record, m);
    if (typeof message.content === "string") record.text = message.content;
    renderUsage(record);
    answerNotes.render(record);
    draw(record);
    if (branchUi) branchUi.decorate(record);
    window.NousAttachments.show(record, message.attachments);
    pageParts.show(record);
  }

  function renderUsage(record) {
    var usage = record.message.usage;
    record.usage.textContent = "";
    record.usage.hidden = !(usage && record.message.role === "assistant");
    if (record.usage.hidden) return;
    [["in", usage.input_tokens], ["out", usage.output_tokens], ["total", usage.total_tokens]].forEach(function (part) {
      var span = make("span", "usage-" + part[0]);
      span.textContent = part[0] + " " + number(part[1]);
      record.usage.appendChild(span);
    });
    record.usage.appendChild(document.createTextNode(" tokens"));
  }

  var draw = util.draw;

  /* The failed-answer part (static/js/failed.js), the provenance button (static/js/provenance.js)
   * and the keyboard / screen-reader behaviour (static/js/a11y.js) of the bubbles. */
  var failedAnswers = window.NousFailed.create({
    records: function () { return state; }, uuid: uuid, failureText: util.failureText, send: function (frame) { return sock.send(frame); },
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

  /* Show a server message: update its bubble if we have one, else add one at the end. */
  function upsert(message, where) {
    if (message.role === "tool") message = toolMessage(message);
    if (failedAnswers.absorb(message)) return null;  // shown in its failed answer's bubble
    return bubbles.upsert(message, where);
  }

  /* A stored tool message holds its call and result as JSON: shown as the live frames show it. */
  function toolMessage(message) {
    var call;
    try { call = JSON.parse(message.content); } catch (err) { return message; }
    if (!call || typeof call !== "object" || !call.tool_call_id) return message;
    var shown = {};
    Object.keys(message).forEach(function (key) { shown[key] = message[key]; });
    shown.id = "tool-" + call.tool_call_id;
    shown.content = "Calling tool `" + (call.name || "?") + "`" + (call.is_error ? " failed: " : " → ") + String(call.result);
    shown.status = call.is_error ? "failed" : "complete";
    return shown;
  }

  // --- scrolling --------------------------------------------------------------------------

  function atBottom() {
    var m = ui.messages;
    return m.scrollHeight - m.scrollTop - m.clientHeight <= STICK_PX;
  }

  function scrollToBottom() {
    ui.messages.scrollTop = ui.messages.scrollHeight;
  }

  function afterContent() {
    if (state.stick) scrollToBottom();
    ui.jump.hidden = state.stick;
  }

  ui.messages.addEventListener("scroll", function () {
    state.stick = atBottom();
    if (state.stick) ui.jump.hidden = true;
  });
  ui.jump.addEventListener("click", function () {
    state.stick = true;
    scrollToBottom();
    ui.jump.hidden = true;
  });

  // --- composer ---------------------------------------------------------------------------

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
    updateCounter();
  }

  function updateCounter() {
    util.updateCounter(ui.counter, ui.input, data.max_message_chars);
  }

  function autoGrow() {
    util.autoGrow(ui.input);
  }

  /* Post a message: keep it pending (and the text in the input) until the server answers. */
  function sendMessage(content, fromInput) {
    content = content.trim();
    if ((!content && !files.items.length) || files.uploading() || state.pending || runActive()) return;
    if (content.length > data.max_message_chars) {
      showBanner("Messages are limited to " + number(data.max_message_chars) + " characters.");
      return;
    }
    hideBanner();
    state.pending = { client_id: uuid(), content: content, fromInput: fromInput, attachments: files.ids() };
    transmitPending();
    updateComposer();
  }

  function transmitPending() {
    if (!state.pending) return;
    sock.send({ type: "message.send", content: state.pending.content, client_id: state.pending.client_id,
      attachments: state.pending.attachments });
  }

  ui.composer.addEventListener("submit", function (event) {
    event.preventDefault();
    sendMessage(ui.input.value, true);
  });
  ui.input.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      sendMessage(ui.input.value, true);
    }
  });
  ui.input.addEventListener("input", function () {
    autoGrow();
    updateCounter();
  });
  ui.stop.addEventListener("click", function () {
    if (!state.activeRun || state.stopRef) return;
    state.stopRef = uuid();
    if (!sock.send({ type: "run.stop", run_id: state.activeRun.run_id, client_id: state.stopRef })) state.stopRef = null;
    updateComposer();
  });

  // --- banner -----------------------------------------------------------------------------

  /* A notice above the messages. (A failed answer's Retry is in its bubble: static/js/failed.js.) */
  function showBanner(text) {
    ui.bannerText.textContent = text;
    ui.banner.hidden = false;
  }

  function hideBanner() {
    ui.banner.hidden = true;
  }

  ui.dismiss.addEventListener("click", hideBanner);

  // --- header, settings -------------------------------------------------------------------

  /* The header: title (also in the sidebar and the tab) and the conversation's token usage. */
  function showConversation(conversation) {
    state.conversation = conversation;
    var title = conversation.title || "New conversation";
    ui.title.textContent = title;
    document.title = title + " · Nous Chat";
    var link = document.querySelector('.sidebar a[data-conversation-id="' + conversation.id + '"]');
    if (link) link.textContent = title;
    var usage = conversation.usage;
    ui.usage.textContent = usage ? number(usage.input_tokens) + " in · " + number(usage.output_tokens) + " out tokens" : "";
  }

  /* The settings form; fields the user is editing are left alone unless `force`. */
  function showSettings(settings, force) {
    if (force || !state.settingsDirty) {
      ui.model.value = settings.model || "";
      ui.instructions.value = settings.instructions || "";
      ui.temperature.value = settings.temperature == null ? "" : String(settings.temperature);
      ui.maxTokens.value = settings.max_tokens == null ? "" : String(settings.max_tokens);
      ui.fallbackModels.value = answerNotes.formatModels(settings.fallback_models);
      state.settingsDirty = false;
    }
    var ignored = settings.ignored || [];
    [["temperature", ui.temperature], ["max_tokens", ui.maxTokens]].forEach(function (pair) {
      var field = pair[1].closest(".field");
      var isIgnored = ignored.indexOf(pair[0]) >= 0;
      field.classList.toggle("ignored", isIgnored);
      field.querySelector(".ignored-note").hidden = !isIgnored;
    });
    ui.settingsIgnored.textContent = ignored.length ? "This model ignores: " + ignored.join(", ").replace(/_/g, " ") : "";
    ui.settingsIgnored.hidden = !ignored.length;
  }

  function settingsNote(text, isError) {
    ui.settingsNote.textContent = text;
    ui.settingsNote.className = "settings-note" + (isError ? " error" : " ok");
    ui.settingsNote.hidden = !text;
  }

  ui.settingsForm.addEventListener("input", function () { state.settingsDirty = true; });
  ui.settingsForm.addEventListener("submit", function (event) {
    event.preventDefault();
    var temperature = ui.temperature.value.trim();
    var maxTokens = ui.maxTokens.value.trim();
    var frame = {
      type: "settings.update",
      model: ui.model.value.trim(),
      instructions: ui.instructions.value,
      temperature: temperature === "" ? null : Number(temperature),
      max_tokens: maxTokens === "" ? null : Number(maxTokens),
      fallback_models: answerNotes.parseModels(ui.fallbackModels.value),
    };
    if (frame.temperature !== null && isNaN(frame.temperature)) return settingsNote("Temperature must be a number.", true);
    if (frame.max_tokens !== null && !Number.isInteger(frame.max_tokens)) return settingsNote("Max tokens must be a whole number.", true);
    // The server echoes client_id as the `ref` of an error, so a refusal lands here.
    state.settingsRef = frame.client_id = uuid();
    if (!sock.send(frame)) {
      state.settingsRef = null;
      return settingsNote("Not connected; try again in a moment.", true);
    }
    ui.settingsSave.disabled = true;
    settingsNote("Saving…", false);
  });

  // --- history ----------------------------------------------------------------------------

  function showHasMore(hasMore) {
    state.hasMore = hasMore;
    ui.loadOlder.hidden = !hasMore;
  }

  ui.loadOlder.addEventListener("click", function () {
    var before = oldestId();
    if (!before || state.historyRef) return;
    state.historyRef = uuid();
    if (!sock.send({ type: "history.load", before: before, client_id: state.historyRef })) {
      state.historyRef = null;
      return;
    }
    ui.loadOlder.disabled = true;
    ui.loadOlder.textContent = "Loading…";
  });

  function historyDone() {
    state.historyRef = null;
    ui.loadOlder.disabled = false;
    ui.loadOlder.textContent = "Load older messages";
  }

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

  var queuedNote = util.queuedNote;

  /* Tool calls waiting for the owner (static/js/approvals.js): a card under the run's answer. */
  var approvals = new window.NousApprovals(function (runId) {
    var record = runRecord(runId);
    if (!record.cards) {
      record.cards = make("div", "approval-cards");
      record.el.insertBefore(record.cards, record.usage);
    }
    return record.cards;
  }, function (frame) { return sock.send(frame); }, null, { canDecide: true });

  /* A run ended: show the stored message as the final word on its text. */
  function endRun(frame, message) {
    approvals.endRun(frame.run_id);
    var record = runRecord(frame.run_id);
    if (record.streamed !== null && message && record.streamed !== message.content) {
      // The stream and the stored text disagree: the stored text wins, and we say so.
      record.el.dataset.resynced = "true";
      if (window.console) console.warn("run " + frame.run_id + ": streamed text differed from the stored message");
    }
    record.streamed = null;
    queuedNote(record, 0);
    if (message) applyMessage(record, message);
    var wasActive = state.activeRun && state.activeRun.run_id === frame.run_id;
    if (wasActive) setActiveRun(null);
    a11y.answerEnded(record, frame.type.slice(4), frame.error && frame.error.message);
    if (wasActive) a11y.restoreFocus();
    afterContent();
    return record;
  }

  /* The frames of a run that both pages take alike (static/js/page_util.js). */
  var runFrames = util.runFrames({
    state: state, runRecord: runRecord, applyMessage: applyMessage, drawSoon: drawSoon,
    setActiveRun: setActiveRun, handlers: function () { return handlers; },
  });

  // --- branches (static/js/branches.js) -----------------------------------------------------

  var branchUi = new window.NousBranches(ui.list, function (frame) { return sock.send(frame); }, {
    onError: function (text) { showBanner(text, false); },
  });

  /* Retry after a failure: a new answer to the same message (a sibling), not the message again. */
  function clearList() {
    ui.list.textContent = "";
    state.records = {};
    state.runs = {};
  }

  /* After a reconnect: does the list show messages of a branch another tab has switched away from? */
  function showsAnotherBranch(messages) {
    if (!messages.length) return false;
    var ids = {}, first = Number(messages[0].id);
    messages.forEach(function (m) { ids[m.id] = true; });
    return Array.prototype.some.call(ui.list.querySelectorAll(".message[data-id]"), function (el) {
      var id = el.dataset.id;
      return /^\d+$/.test(id) && Number(id) >= first && !ids[id];
    });
  }

  /* `branch.switched`: the newest page of the branch now selected replaces the list. */
  function showBranch(frame) {
    clearList();
    (frame.messages || []).forEach(function (m) { upsert(m); });
    showHasMore(frame.has_more);
    ui.empty.hidden = ui.list.children.length > 0;
    if (branchUi.switched(frame) || failedAnswers.switched(frame)) {
      expectRun(true);  // our regenerate or edit: its run.queued follows
      hideBanner();
    }
    state.stick = true;
    updateComposer();
    afterContent();
  }

  // --- frames -----------------------------------------------------------------------------

  var handlers = {
    "session.ready": function (frame) {
      showConversation(frame.conversation);
      showSettings(frame.conversation.settings || {}, false);
      expectRun(false);
      var messages = frame.messages || [];
      if (state.readyOnce && showsAnotherBranch(messages)) clearList();
      var firstId = messages.length ? messages[0].id : null;
      var known = firstId && state.records[firstId];
      messages.forEach(function (m) { upsert(m); });
      // After a reconnect the older pages loaded before are still shown; keep their has_more.
      if (!state.readyOnce || known && oldestId() === firstId || !oldestId()) showHasMore(frame.has_more);
      runFrames.sync(frame.active_run);
      // Exactly the calls still waiting keep (or get) their card, whatever the events showed.
      approvals.reset(frame.pending_approvals || []);
      if (state.pending) {
        var stored = messages.filter(function (m) { return m.client_id === state.pending.client_id; })[0];
        if (stored) handlers["message.created"]({ type: "message.created", message: stored });
        else transmitPending();  // never answered: the same client_id, so never stored twice
      }
      ui.empty.hidden = ui.list.children.length > 0;
      state.readyOnce = true;
      state.stick = true;
      updateComposer();
      afterContent();
    },

    "message.created": function (frame) {
      var message = frame.message;
      var isNew = !state.records[message.id];
      var pending = state.pending;
      upsert(message);
      if (pending && message.client_id === pending.client_id) {
        state.pending = null;
        files.clear();
        if (pending.fromInput && ui.input.value.trim() === pending.content) {
          ui.input.value = "";
          autoGrow();
        }
        expectRun(isNew && !state.activeRun);
        if (!state.conversation.title && message.role === "user") {
          var line = message.content.split(/\s+/).join(" ").trim();
          showConversation(Object.assign({}, state.conversation, { title: line.length <= 60 ? line : line.slice(0, 57).trim() + "..." }));
        }
        hideBanner();
        updateComposer();
      }
      state.stick = state.stick || message.role === "user";
      afterContent();
    },

    "run.queued": function (frame) {
      var record = runRecord(frame.run_id);
      queuedNote(record, frame.position);
      if (record.streamed === null) record.streamed = "";
      setActiveRun({ run_id: frame.run_id, status: "queued", position: frame.position });
      afterContent();
    },

    "run.started": function (frame) { runFrames.started(frame); },

    "run.delta": function (frame) { runFrames.delta(frame); },

    "run.completed": function (frame) {
      var message = Object.assign({}, frame.message, { usage: frame.message.usage || frame.usage });
      endRun(frame, message);
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
      endRun(frame, frame.message);
    },

    "run.failed": function (frame) {
      // One bubble: the partial answer, the error and Retry (static/js/failed.js).
      failedAnswers.runFailed(frame);
      var partial = frame.partial || null;
      endRun(frame, partial);
      var runRecordOf = state.runs[frame.run_id];
      if (!partial && runRecordOf) applyMessage(runRecordOf, { status: "failed" });
      if (frame.message && frame.message.role !== "assistant") upsert(frame.message);
      afterContent();
    },

    "run.tool_call": function (frame) {
      var call = frame.tool_call || {};
      upsert({ id: "tool-" + call.id, role: "tool", status: "complete", author: "tool",
               content: "Calling tool `" + (call.name || "?") + "`" });
    },

    "run.approval_required": function (frame) {
      approvals.require(frame);
      afterContent();
    },

    "run.tool_result": function (frame) {
      approvals.resolve(frame.tool_call_id);
      var record = state.records["tool-" + frame.tool_call_id];
      if (record) {
        applyMessage(record, { content: record.text + (frame.is_error ? " failed: " : " → ") + frame.result,
                               status: frame.is_error ? "failed" : "complete" });
      }
    },

    "conversation.updated": function (frame) {
      showConversation(frame.conversation);
      showSettings(frame.conversation.settings || {}, !!state.settingsRef);
      if (state.settingsRef) {
        state.settingsRef = null;
        ui.settingsSave.disabled = false;
        settingsNote("Saved. The next answer uses these settings.", false);
      }
    },

    "history": function (frame) {
      var m = ui.messages;
      var fromBottom = m.scrollHeight - m.scrollTop;
      var messages = frame.messages || [];
      for (var i = messages.length - 1; i >= 0; i--) {
        if (!state.records[messages[i].id]) upsert(messages[i], "top");
      }
      showHasMore(frame.has_more);
      historyDone();
      // Keep what the user was reading where it was.
      m.scrollTop = m.scrollHeight - fromBottom;
    },

    "branch.switched": showBranch,

    "error": function (frame) {
      if (approvals.handleError(frame)) return;  // shown in the card of that tool call
      if (branchUi.handleError(frame)) return;  // a refused regenerate or edit
      if (failedAnswers.handleError(frame)) return;  // a refused Retry, shown in its bubble
      var ref = frame.ref;
      if (ref && state.pending && ref === state.pending.client_id) {
        var pending = state.pending;
        state.pending = null;
        // Nothing typed is lost: the text stays in (or comes back to) the input.
        if (!ui.input.value.trim()) ui.input.value = pending.content;
        updateComposer();
        autoGrow();
        ui.input.focus();
        showBanner(frame.message);
        return;
      }
      if (ref && ref === state.settingsRef) {
        state.settingsRef = null;
        ui.settingsSave.disabled = false;
        settingsNote(frame.message, true);
        return;
      }
      if (ref && ref === state.historyRef) {
        historyDone();
        showBanner(frame.message);
        return;
      }
      if (ref && ref === state.stopRef) {
        state.stopRef = null;
        updateComposer();
        if (frame.code === "not_found") return;  // it ended by itself meanwhile
      }
      showBanner(frame.message);
    },

    "typing": function () {},
    "pong": function () {},
  };

  // --- a linked message (?message=<id>, from the search page) ----------------------------

  /* Scroll to the message the link names and highlight it, loading older pages until it is
     shown; past the conversation's start (or on a failed load) it gives up quietly. */
  var linkedId = (window.location.search.match(/[?&]message=(\d+)(?:&|$)/) || [])[1] || null;
  function followLinkedMessage(frame) {
    if (!linkedId || (frame.type !== "session.ready" && frame.type !== "history")) return;
    var record = state.records[linkedId];
    if (record) {
      linkedId = null;
      state.stick = false;
      record.el.scrollIntoView({ block: "center" });
      record.el.classList.add("highlighted");
      ui.jump.hidden = atBottom();
      return;
    }
    var oldest = oldestId();
    if (!state.hasMore || !oldest || Number(oldest) <= Number(linkedId)) {
      linkedId = null;
      return;
    }
    if (!state.historyRef) ui.loadOlder.click();
  }

  // --- connection -------------------------------------------------------------------------

  function showStatus(name, info) {
    var text = util.statusText(name, info);
    if (name === "closed" && info.reason) text = info.reason;
    if (name === "reconnecting" && info.reason) ui.status.title = info.reason;
    ui.status.textContent = text;
    ui.status.dataset.state = name;
  }

  var sock = new window.NousSocket({
    path: data.ws_path,
    onStatus: function (name, info) {
      showStatus(name, info);
      if (name === "closed" && info.code) {
        ui.input.disabled = ui.send.disabled = true;
        showBanner(info.reason);
      }
    },
    onFrame: function (frame) {
      var handler = handlers[frame.type];
      if (handler) handler(frame);
      watchForStall(frame);
      followLinkedMessage(frame);
    },
  });

  /* A run silent for a while asks the server where it stands (static/js/page_util.js). */
  var watchForStall = util.stallWatcher(sock, function () { return state.activeRun; });

  util.wirePage(sock);

  // Under test, the page's state can be inspected; nothing here is an API.
  window.NousChat = { state: state, socket: sock, approvals: approvals };

  showConversation(data.conversation);
  showSettings(data.conversation.settings || {}, true);
  updateComposer();
  sock.connect();
})();
