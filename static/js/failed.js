/* Nous Chat: a failed answer is one bubble: its partial text (if any), the error, and Retry.
 *
 * The run's stored error message (role "error", same run_id) is shown in the failed answer's
 * bubble instead of a bubble of its own. Retry regenerates the answer to the same user message:
 * `{"type": "message.regenerate", "message_id": <the failed answer's id>, "client_id"}`; a refusal
 * (an `error` whose ref is that client_id) is shown in the bubble. Server text by textContent only.
 *
 * `NousFailed.create({records, regenerate})`: `records()` gives the page's state (`runs`),
 * `regenerate(id, record)` sends the frame (the branches' own, so their controls wait too) and
 * returns its client_id, or false if it was not sent; without `regenerate` (rooms) there is no Retry.
 */
(function (root) {
  "use strict";

  var RETRY_HINT = /\s*Press Retry (?:to send your message again|for a new answer)\.\s*$/;

  function create(p) {
    var errors = {};   // run_id -> error text
    var retries = {};  // client_id -> record whose Retry sent it

    var make = window.NousPage.make;  // static/js/page_util.js, loaded first

    /* An error message of a run: kept for that run's answer. True: it needs no bubble of its own. */
    function absorb(message) {
      if (message.role !== "error" || !message.run_id) return false;
      // The live run.failed's text (it may say when a provider is tried again) wins over the stored one.
      errors[message.run_id] = errors[message.run_id] || String(message.content || "").replace(RETRY_HINT, "").replace(/\.$/, "") || "The answer failed.";
      var record = p.records().runs[message.run_id];
      if (record) show(record);
      return true;
    }

    /* The live run.failed: its error, before the stored error message arrives. */
    function runFailed(frame) {
      var error = frame.error || {};
      errors[frame.run_id] = p.failureText ? p.failureText(error, "The answer failed.") : error.message || "The answer failed.";
      var record = p.records().runs[frame.run_id];
      if (record) show(record);
    }

    /* Draw (or take away) the failure part of an assistant bubble. */
    function show(record) {
      var m = record.message;
      var failed = m.role === "assistant" && m.status === "failed";
      if (!failed) {
        if (record.failure) record.failure.box.hidden = true;
        record.el.classList.remove("failed-answer");
        return;
      }
      if (!record.failure) record.failure = build(record);
      record.failure.box.hidden = false;
      record.el.classList.add("failed-answer");
      record.failure.text.textContent = errors[m.run_id] || "The answer failed.";
      record.failure.retry.hidden = !m.id || !p.regenerate;
    }

    function build(record) {
      var box = make("div", "failure");
      box.setAttribute("role", "group");
      box.setAttribute("aria-label", "The answer failed");
      var text = make("p", "failure-text");
      var note = make("p", "failure-note");
      note.hidden = true;
      note.setAttribute("role", "status");
      var retry = make("button", "primary small-button failure-retry", "Retry");
      retry.type = "button";
      retry.addEventListener("click", function () { regenerate(record); });
      box.appendChild(text);
      box.appendChild(retry);
      box.appendChild(note);
      record.content.parentNode.insertBefore(box, record.content.nextSibling);
      return { box: box, text: text, note: note, retry: retry };
    }

    function regenerate(record) {
      var failure = record.failure;
      failure.note.hidden = true;
      var ref = p.regenerate(String(record.message.id), record);
      if (!ref) {
        failure.note.textContent = "Not sent: the page is not connected, or an answer is being written; try again in a moment.";
        failure.note.hidden = false;
        return;
      }
      retries[ref] = record;
      failure.retry.disabled = true;
      failure.retry.textContent = "Retrying…";
    }

    /* An `error` refusing a Retry: shown in that bubble. True if it was one. */
    function handleError(frame) {
      var record = frame.ref && retries[frame.ref];
      if (!record) return false;
      delete retries[frame.ref];
      var failure = record.failure;
      failure.retry.disabled = false;
      failure.retry.textContent = "Retry";
      failure.note.textContent = "Retry did not start: " + (frame.message || frame.code || "refused");
      failure.note.hidden = false;
      return true;
    }

    /* `branch.switched`: true if it answers one of our Retries (its run follows). */
    function switched(frame) {
      var ours = false;
      (frame.messages || []).forEach(function (m) {
        if (m.client_id && retries[m.client_id]) {
          delete retries[m.client_id];
          ours = true;
        }
      });
      return ours;
    }

    return { absorb: absorb, runFailed: runFailed, show: show, handleError: handleError, switched: switched };
  }

  root.NousFailed = { create: create };
})(window);
