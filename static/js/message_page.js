/* Nous Chat: what the chat page and the room page do alike (static/js/chat.js, static/js/rooms.js):
 * the banner, keeping the list scrolled to the newest message, the composer's pending message,
 * paging back through history, the frames of a run from queued to its end, where a run's approval
 * cards go, and the socket with its frame handlers.
 *
 * Exported as `NousMessagePage`; each part is a factory the page wires to its own elements.
 * Load it after static/js/page_util.js. Server text goes in by textContent only.
 */
(function (root) {
  "use strict";

  var STICK_PX = 48;  // this close to the bottom counts as reading the newest message

  var util = root.NousPage;
  var queuedNote = util.queuedNote;

  /* The notice above the messages: `show(text)`, `hide()`; its close button hides it. */
  function banner(ui) {
    function show(text) {
      ui.bannerText.textContent = text;
      ui.banner.hidden = false;
    }

    function hide() {
      ui.banner.hidden = true;
    }

    ui.dismiss.addEventListener("click", hide);
    return { show: show, hide: hide };
  }

  /* While `state.stick` the list follows new content; scrolled up, "Jump to latest" shows. */
  function scrolling(state, scroller, jump) {
    function atBottom() {
      return scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight <= STICK_PX;
    }

    /* Call after anything was added or redrawn. */
    function afterContent() {
      if (state.stick) scroller.scrollTop = scroller.scrollHeight;
      jump.hidden = state.stick;
    }

    scroller.addEventListener("scroll", function () {
      state.stick = atBottom();
      if (state.stick) jump.hidden = true;
    });
    jump.addEventListener("click", function () {
      state.stick = true;
      afterContent();
    });
    return { atBottom: atBottom, afterContent: afterContent };
  }

  /* The composer: Enter (or the Send button) posts the text as a `message.send` kept in
   * `state.pending` (the text stays in the input) until the server stores it or refuses it.
   * `p`: `state`, `form`, `input`, `counter`, `maxChars`, `banner`, `send(frame)` (the socket),
   * `update()` (the page redraws its composer), `blocked(content)` (true: not now), and optional
   * `extra()` (more fields of the pending entry and the frame: the chat's attachments),
   * `beforeSend()`, `onInput()`. */
  function composer(p) {
    var state = p.state, input = p.input;

    function updateCounter() {
      util.updateCounter(p.counter, input, p.maxChars);
    }

    function autoGrow() {
      util.autoGrow(input);
    }

    function submit() {
      var content = input.value.trim();
      if (p.blocked(content) || state.pending) return;
      if (content.length > p.maxChars) {
        p.banner.show("Messages are limited to " + util.number(p.maxChars) + " characters.");
        return;
      }
      p.banner.hide();
      state.pending = Object.assign({ client_id: util.uuid(), content: content }, p.extra ? p.extra() : {});
      if (p.beforeSend) p.beforeSend();
      transmit();
      p.update();
    }

    /* (Again, after a reconnect: the same client_id, so the server never stores it twice.) */
    function transmit() {
      if (!state.pending) return;
      var frame = { type: "message.send", content: state.pending.content, client_id: state.pending.client_id };
      if (state.pending.attachments !== undefined) frame.attachments = state.pending.attachments;
      p.send(frame);
    }

    /* `message.created`: if `message` is our pending one, the composer is free again and its text
     * is cleared (unless the user typed something else meanwhile). Returns the pending entry, or null. */
    function stored(message) {
      var pending = state.pending;
      if (!pending || message.client_id !== pending.client_id) return null;
      state.pending = null;
      return pending;
    }

    function clearSent(pending) {
      if (input.value.trim() === pending.content) {
        input.value = "";
        autoGrow();
      }
    }

    /* session.ready: the pending message was stored while we were away (`created(message)`
     * takes it as a `message.created`), or it goes again. */
    function resend(messages, created) {
      if (!state.pending) return;
      var found = messages.filter(function (m) { return m.client_id === state.pending.client_id; })[0];
      if (found) created({ type: "message.created", message: found });
      else transmit();
    }

    /* An `error` refusing the pending message: nothing typed is lost, the text stays in (or comes
     * back to) the input. True if it was that. */
    function refused(frame) {
      if (!frame.ref || !state.pending || frame.ref !== state.pending.client_id) return false;
      var pending = state.pending;
      state.pending = null;
      if (!input.value.trim()) input.value = pending.content;
      p.update();
      autoGrow();
      input.focus();
      p.banner.show(frame.message);
      return true;
    }

    p.form.addEventListener("submit", function (event) {
      event.preventDefault();
      submit();
    });
    input.addEventListener("keydown", function (event) {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        submit();
      }
    });
    input.addEventListener("input", function () {
      autoGrow();
      updateCounter();
      if (p.onInput) p.onInput();
    });

    return { updateCounter: updateCounter, autoGrow: autoGrow, stored: stored, clearSent: clearSent, resend: resend, refused: refused };
  }

  /* "Load older messages" and the `history` pages it brings. `p`: `state`, `button`, `scroller`,
   * `oldestId()`, `upsert(message, where)`, `request(frame)` (sends a frame that may be refused;
   * returns its client_id, or null when not sent) and optional `forget(ref)` (on done). */
  function olderPages(p) {
    var state = p.state, button = p.button;
    var ref = null;  // the client_id of the history.load in flight

    function showHasMore(hasMore) {
      state.hasMore = hasMore;
      button.hidden = !hasMore;
    }

    function done() {
      if (ref && p.forget) p.forget(ref);
      ref = null;
      button.disabled = false;
      button.textContent = "Load older messages";
    }

    /* The `history` frame: older messages on top, and what the user was reading stays where it was. */
    function show(frame) {
      var m = p.scroller;
      var fromBottom = m.scrollHeight - m.scrollTop;
      var messages = frame.messages || [];
      for (var i = messages.length - 1; i >= 0; i--) {
        if (!state.records[messages[i].id]) p.upsert(messages[i], "top");
      }
      showHasMore(!!frame.has_more);
      done();
      m.scrollTop = m.scrollHeight - fromBottom;
    }

    button.addEventListener("click", function () {
      var before = p.oldestId();
      if (!before || ref) return;
      ref = p.request({ type: "history.load", before: before });
      if (!ref) return;
      button.disabled = true;
      button.textContent = "Loading…";
    });

    return {
      showHasMore: showHasMore, done: done, show: show,
      loading: function () { return ref !== null; },
      isOurs: function (r) { return !!r && r === ref; },
    };
  }

  /* The frames of a run. `p` gives the page's `state` (`activeRun`, `runs`), `runRecord(run_id)`,
   * `applyMessage(record, message)`, `drawSoon(record)`, `setActiveRun(run)`, `afterContent()`,
   * `approvals()`, `handlers()` (its frame handlers, for the events of a run resumed), and optional
   * `markUnfinished` (a run that ends with no message marks a still-streaming answer stopped or
   * failed) and `ended(record, frame, wasActive)`. */
  function runFrames(p) {
    var state = p.state;
    return {
      /* session.ready's `active_run` (or null): the run watched before may have ended meanwhile;
       * the one going on shows what it streamed so far, and its tool frames go through the same
       * handlers as the live ones. */
      sync: function (active) {
        if (state.activeRun && (!active || active.run_id !== state.activeRun.run_id)) {
          // The run we watched ended while we were away; the page of messages has its final text.
          var gone = state.runs[state.activeRun.run_id];
          if (gone) gone.streamed = null;
          p.setActiveRun(null);
        }
        if (!active) return;
        var record = p.runRecord(active.run_id);
        record.text = active.content || "";
        record.streamed = record.text;
        p.applyMessage(record, { status: "streaming" });
        queuedNote(record, 0);
        p.setActiveRun({ run_id: active.run_id, status: active.status });
        var handlers = p.handlers();
        (active.events || []).forEach(function (event) {
          var handle = handlers[event.type];
          if (handle && event.type !== "session.ready") handle(event);
        });
      },

      queued: function (frame) {
        var record = p.runRecord(frame.run_id);
        queuedNote(record, frame.position);
        if (record.streamed === null) record.streamed = "";
        p.setActiveRun({ run_id: frame.run_id, status: "queued", position: frame.position });
        p.afterContent();
      },

      started: function (frame) {
        var record = p.runRecord(frame.run_id);
        queuedNote(record, 0);
        if (record.streamed === null) record.streamed = record.text;
        p.setActiveRun({ run_id: frame.run_id, status: "running" });
      },

      delta: function (frame) {
        var record = p.runRecord(frame.run_id);
        if (record.message.status !== "streaming") return;  // a late delta after the end
        record.text += frame.text;
        record.streamed = (record.streamed || "") + frame.text;
        queuedNote(record, 0);
        if (!state.activeRun) p.setActiveRun({ run_id: frame.run_id, status: "running" });
        p.drawSoon(record);
      },

      /* A run ended (completed, stopped or failed): the stored `message` is the final word on its text. */
      end: function (frame, message) {
        p.approvals().endRun(frame.run_id);
        var record = p.runRecord(frame.run_id);
        if (record.streamed !== null && message && record.streamed !== message.content) {
          // The stream and the stored text disagree: the stored text wins, and we say so.
          record.el.dataset.resynced = "true";
          if (root.console) root.console.warn("run " + frame.run_id + ": streamed text differed from the stored message");
        }
        record.streamed = null;
        queuedNote(record, 0);
        if (message) p.applyMessage(record, message);
        else if (p.markUnfinished && record.message.status === "streaming") {
          p.applyMessage(record, { status: frame.type === "run.stopped" ? "stopped" : "failed" });
        }
        var wasActive = !!state.activeRun && state.activeRun.run_id === frame.run_id;
        if (wasActive) p.setActiveRun(null);
        if (p.ended) p.ended(record, frame, wasActive);
        p.afterContent();
        return record;
      },
    };
  }

  /* Where the approval cards of a run go (static/js/approvals.js): a box in the run's answer,
   * made on first need just before `record[before]` (the part the page keeps last). */
  function approvalCards(runRecord, before) {
    return function (runId) {
      var record = runRecord(runId);
      if (!record.cards) {
        record.cards = util.make("div", "approval-cards");
        record.el.insertBefore(record.cards, record[before]);
      }
      return record.cards;
    };
  }

  /* The page's socket (static/js/socket.js): each frame goes to its handler in `p.handlers()`, then
   * to `p.afterFrame(frame)` if given; a run silent for a while asks the server where it stands;
   * the sidebar toggle and leaving the page are wired (static/js/page_util.js). `p`: `path`,
   * `state` (its `activeRun`), `handlers()`, `onStatus(name, info)`, optional `afterFrame`. */
  function connection(p) {
    var sock = new root.NousSocket({
      path: p.path,
      onStatus: p.onStatus,
      onFrame: function (frame) {
        var handler = p.handlers()[frame.type];
        if (handler) handler(frame);
        watchForStall(frame);
        if (p.afterFrame) p.afterFrame(frame);
      },
    });
    var watchForStall = util.stallWatcher(sock, function () { return p.state.activeRun; });
    util.wirePage(sock);
    return sock;
  }

  root.NousMessagePage = {
    banner: banner, scrolling: scrolling, composer: composer, olderPages: olderPages, runFrames: runFrames,
    approvalCards: approvalCards, connection: connection,
    STICK_PX: STICK_PX,
  };
})(window);
