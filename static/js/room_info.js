/* Nous Chat: the room page's parts about the room rather than its messages: the title (also in
 * the tab), who is here now (the sidebar's list), and the AI switch (`ai.toggle`, the owner's).
 *
 * `NousRoomInfo.create({state, data, list, typers, sendWithRef})`: `state.room` and
 * `state.participants` are kept here; `list` holds the bubbles (the AI's follow a rename);
 * `typers` (static/js/typing.js) drops who left; `sendWithRef(frame, what)` sends a frame that may
 * be refused. The page calls `showRoom(room)`, `showParticipants(names)`, `aiName()`,
 * `toggleRefused()` when an `error` answers our toggle, and `ready()` after a reconnect.
 */
(function (root) {
  "use strict";

  var make = root.NousPage.make;  // static/js/page_util.js, loaded first

  function create(p) {
    var state = p.state, data = p.data;
    var $ = function (id) { return document.getElementById(id); };
    var ui = {
      title: $("room-title"), participants: $("participants"),
      aiSwitch: $("ai-switch"), aiToggle: $("ai-toggle"), aiLabel: $("ai-label"), aiState: $("ai-state"),
    };

    function aiName() {
      return (state.room.settings && state.room.settings.ai_name) || "AI";
    }

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
      p.list.querySelectorAll('.message[data-role="assistant"]').forEach(function (el) {
        var record = state.records[el.dataset.id];
        if (record) record.author.textContent = aiName();
      });
    }

    function showParticipants(names) {
      state.participants = (names || []).slice();
      ui.participants.textContent = "";
      state.participants.forEach(function (name) {
        var li = make("li", name === data.username ? "me" : null, name);
        li.dataset.user = name;
        ui.participants.appendChild(li);
      });
      p.typers.keepOnly(state.participants);
    }

    /* The switch shows the room's setting again. */
    function toggleRefused() {
      ui.aiToggle.disabled = false;
      ui.aiToggle.checked = !!(state.room.settings && state.room.settings.ai_active);
    }

    ui.aiSwitch.hidden = !data.is_owner;
    ui.aiToggle.addEventListener("change", function () {
      var wanted = ui.aiToggle.checked;
      if (p.sendWithRef({ type: "ai.toggle", active: wanted }, { kind: "toggle" })) {
        ui.aiToggle.disabled = true;
      } else {
        ui.aiToggle.checked = !wanted;
      }
    });

    return {
      showRoom: showRoom, showParticipants: showParticipants, aiName: aiName, toggleRefused: toggleRefused,
      ready: function () { ui.aiToggle.disabled = false; },
    };
  }

  root.NousRoomInfo = { create: create };
})(window);
