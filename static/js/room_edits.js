/* Nous Chat: editing and deleting one's own messages in a room (`message.edit`, `message.delete`):
 * the Edit and Delete links of a bubble and the inline editor.
 *
 * `NousRoomEdits.create({state, isMine, send, banner, maxChars, draw})`: `isMine(message)`;
 * `send(frame, what)` puts a frame that may be refused on the socket (its client_id, or null);
 * `banner.show(text)`; `draw(record)` redraws a bubble's text. The page calls `renderActions(record)`
 * whenever a bubble's message changes, `endEdit(record)` when the edit is stored (or to drop it),
 * and `refused(record)` when the server refuses an edit (the editor stays open to try again).
 */
(function (root) {
  "use strict";

  var make = root.NousPage.make;  // static/js/page_util.js, loaded first

  function create(p) {
    /* Edit and Delete, on one's own stored messages only. */
    function renderActions(record) {
      var mine = p.isMine(record.message);
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
        if (content.length > p.maxChars) {
          return p.banner.show("Messages are limited to " + root.NousPage.number(p.maxChars) + " characters.");
        }
        var ref = p.send({ type: "message.edit", id: record.message.id, content: content }, { kind: "edit", record: record });
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
      if (record.editing.ref) delete p.state.refs[record.editing.ref];
      record.editing = null;
      p.draw(record);
      renderActions(record);
    }

    function refused(record) {
      if (!record.editing) return;
      record.editing.ref = null;
      record.editing.save.disabled = false;
      record.editing.save.textContent = "Save";
    }

    function deleteMessage(record) {
      if (!root.confirm("Delete this message?")) return;
      p.send({ type: "message.delete", id: record.message.id }, { kind: "delete", record: record });
    }

    return { renderActions: renderActions, endEdit: endEdit, refused: refused };
  }

  root.NousRoomEdits = { create: create };
})(window);
