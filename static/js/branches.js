/* Nous Chat: a chat's branches on the page (README "Branches"): the `< 2/3 >` control of a message
 * with siblings, Regenerate on the last answer, Edit (an inline editor) on the user's messages.
 *
 * `new NousBranches(list, send, options)`:
 * - `list`: the element holding the bubbles (`.message[data-id]`);
 * - `send(frame)`: puts a frame on the socket, false when not connected;
 * - `options.onError(text)`: shows a refusal (the page's banner).
 *
 * The page calls `decorate(record)` whenever a bubble's message changes, `setBusy(busy)` when a
 * run starts or ends (the controls are disabled meanwhile), `switched(frame)` on `branch.switched`
 * (true: it answered our own regenerate or edit, so a run follows), `handleError(frame)` first in
 * its `error` handler (true: a refusal of one of ours), `showsAnotherBranch(messages)` on a
 * reconnect's session.ready, and `regenerate(id)` for Retry.
 * Server text goes in by textContent only.
 */
(function (root) {
  "use strict";

  var util = root.NousPage;
  var uuid = util.uuid, make = util.make;

  function button(className, text, label) {
    var b = make("button", "small-button " + className, text);
    b.type = "button";
    if (label) b.setAttribute("aria-label", label);
    return b;
  }

  function NousBranches(list, send, options) {
    this.list = list;
    this.send = send;
    this.options = options || {};
    this.busy = false;
    this.refs = {};  // client_id of our regenerate / edit in flight -> the record it came from
  }

  /* Add (or update) the controls of one bubble from its message. */
  NousBranches.prototype.decorate = function (record) {
    var m = record.message;
    if (!m.id || !/^\d+$/.test(String(m.id)) || (m.role !== "user" && m.role !== "assistant")) return;
    if (!record.branchBar) this.build(record);
    var branch = m.branch;
    record.branchNav.hidden = !branch;
    if (branch) {
      record.branchLabel.textContent = branch.index + "/" + branch.count;
      record.branchLabel.setAttribute("aria-label", "Version " + branch.index + " of " + branch.count);
    }
    record.editButton.hidden = m.role !== "user";
    this.refresh();
  };

  NousBranches.prototype.build = function (record) {
    var self = this;
    var bar = record.branchBar = make("div", "branch-bar");
    var nav = record.branchNav = make("span", "branch-nav");
    var prev = record.branchPrev = button("branch-prev", "<", "Previous version");
    var label = record.branchLabel = make("span", "branch-label");
    var next = record.branchNext = button("branch-next", ">", "Next version");
    nav.appendChild(prev);
    nav.appendChild(label);
    nav.appendChild(next);
    prev.addEventListener("click", function () { self.step(record, -1); });
    next.addEventListener("click", function () { self.step(record, 1); });
    record.editButton = button("edit-message", "Edit", "Edit this message");
    record.editButton.addEventListener("click", function () { self.openEditor(record); });
    record.regenerateButton = button("regenerate", "Regenerate", "Write this answer again");
    record.regenerateButton.addEventListener("click", function () { self.regenerate(record.message.id, record); });
    bar.appendChild(nav);
    bar.appendChild(record.editButton);
    bar.appendChild(record.regenerateButton);
    record.el.appendChild(bar);
  };

  /* Only the last answer offers Regenerate; every control waits while a run streams. */
  NousBranches.prototype.refresh = function () {
    var answers = this.list.querySelectorAll('.message[data-role="assistant"][data-id]');
    var last = answers[answers.length - 1];
    var busy = this.busy;
    this.list.querySelectorAll(".branch-bar").forEach(function (bar) {
      var regenerate = bar.querySelector(".regenerate");
      regenerate.hidden = bar.parentNode !== last;
      bar.querySelectorAll("button").forEach(function (b) { b.disabled = busy; });
      var label = bar.querySelector(".branch-label").textContent.split("/");
      if (label.length === 2) {
        bar.querySelector(".branch-prev").disabled = busy || label[0] === "1";
        bar.querySelector(".branch-next").disabled = busy || label[0] === label[1];
      }
    });
  };

  /* After a reconnect (`messages`: session.ready's page): does the list show messages of a branch
   * another tab has switched away from? Then the page starts its list again. */
  NousBranches.prototype.showsAnotherBranch = function (messages) {
    if (!messages.length) return false;
    var ids = {}, first = Number(messages[0].id);
    messages.forEach(function (m) { ids[m.id] = true; });
    return Array.prototype.some.call(this.list.querySelectorAll(".message[data-id]"), function (el) {
      var id = el.dataset.id;
      return /^\d+$/.test(id) && Number(id) >= first && !ids[id];
    });
  };

  NousBranches.prototype.setBusy = function (busy) {
    busy = !!busy || Object.keys(this.refs).length > 0;  // ours in flight: its run follows
    if (this.busy === busy) return;
    this.busy = busy;
    this.refresh();
  };

  NousBranches.prototype.step = function (record, direction) {
    var branch = record.message.branch;
    if (this.busy || !branch) return;
    var target = branch.siblings[branch.index - 1 + direction];
    if (target) this.send({ type: "branch.select", message_id: target });
  };

  /* A new answer to the same question (`id`: an answer, or a user message): the frame's
   * client_id, or false if it was not sent (a run streams, or the page is not connected). */
  NousBranches.prototype.regenerate = function (id, record) {
    if (this.busy) return false;
    var ref = uuid();
    if (!this.send({ type: "message.regenerate", message_id: String(id), client_id: ref })) return false;
    this.refs[ref] = record || null;
    this.setBusy(true);
    return ref;
  };

  NousBranches.prototype.openEditor = function (record) {
    var self = this;
    if (this.busy || record.editor) return;
    var box = record.editor = make("form", "edit-box");
    var area = make("textarea", "edit-input");
    area.value = record.text;
    area.setAttribute("aria-label", "Edit your message");
    area.rows = Math.min(10, Math.max(2, record.text.split("\n").length));
    var save = button("edit-save primary", "Save and send");
    save.type = "submit";
    var cancel = button("edit-cancel", "Cancel");
    box.appendChild(area);
    box.appendChild(save);
    box.appendChild(cancel);
    box.addEventListener("submit", function (event) {
      event.preventDefault();
      var content = area.value.trim();
      if (!content || self.busy) return;
      var ref = uuid();
      if (!self.send({ type: "message.edit", id: String(record.message.id), content: content, client_id: ref })) {
        if (self.options.onError) self.options.onError("Not connected; try again in a moment.");
        return;
      }
      self.refs[ref] = record;
      save.disabled = true;
      self.setBusy(true);
    });
    cancel.addEventListener("click", function () { self.closeEditor(record); });
    record.content.hidden = true;
    record.el.insertBefore(box, record.branchBar);
    area.focus();
  };

  NousBranches.prototype.closeEditor = function (record) {
    if (!record.editor) return;
    record.editor.remove();
    record.editor = null;
    record.content.hidden = false;
  };

  /* `branch.switched`: the page has replaced its list; true if it was our own regenerate or edit. */
  NousBranches.prototype.switched = function (frame) {
    var ours = false, refs = this.refs;
    (frame.messages || []).forEach(function (m) {
      if (m.client_id && Object.prototype.hasOwnProperty.call(refs, m.client_id)) {
        delete refs[m.client_id];
        ours = true;
      }
    });
    if (ours) this.refs = {};
    this.refresh();
    return ours;
  };

  /* `quiet`: the refusal is shown elsewhere (a Retry's, in its bubble). */
  NousBranches.prototype.handleError = function (frame, quiet) {
    if (!frame.ref || !Object.prototype.hasOwnProperty.call(this.refs, frame.ref)) return false;
    var record = this.refs[frame.ref];
    delete this.refs[frame.ref];
    this.busy = false;
    if (record && record.editor) record.editor.querySelector(".edit-save").disabled = false;
    this.refresh();
    if (this.options.onError && !quiet) this.options.onError(frame.message);
    return true;
  };

  root.NousBranches = NousBranches;
})(window);
