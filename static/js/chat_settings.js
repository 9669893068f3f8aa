/* Nous Chat: the chat page's header and settings panel: the conversation's title (also in the
 * sidebar and the tab) and token usage, and the agent settings form (`settings.update`).
 *
 * `NousChatSettings.create({state, send, uuid})`: `state.conversation` is kept here; `send(frame)`
 * returns false when not connected. The page calls `showConversation(conversation)`,
 * `showSettings(settings, force)`, `updated(frame)` on `conversation.updated`, and
 * `handleError(frame)` in its `error` handler (true: the refusal of our save, shown under the
 * form). Server text goes in by textContent only.
 */
(function (root) {
  "use strict";

  var util = root.NousPage;  // static/js/page_util.js, loaded first
  var notes = root.NousAnswerNotes;  // static/js/answer_notes.js: the fallback models field

  function create(p) {
    var state = p.state;
    var $ = function (id) { return document.getElementById(id); };
    var ui = {
      title: $("conversation-title"),
      usage: $("conversation-usage"),
      settingsForm: $("settings-form"),
      model: $("settings-model"),
      instructions: $("settings-instructions"),
      temperature: $("settings-temperature"),
      maxTokens: $("settings-max-tokens"),
      fallbackModels: $("settings-fallback-models"),
      settingsSave: $("settings-save"),
      settingsNote: $("settings-note"),
      settingsIgnored: $("settings-ignored"),
    };
    var saveRef = null;   // client_id of our settings.update in flight
    var dirty = false;    // the user is editing the form

    /* The header: title (also in the sidebar and the tab) and the conversation's token usage. */
    function showConversation(conversation) {
      state.conversation = conversation;
      var title = conversation.title || "New conversation";
      ui.title.textContent = title;
      document.title = title + " · Nous Chat";
      var link = document.querySelector('.sidebar a[data-conversation-id="' + conversation.id + '"]');
      if (link) link.textContent = title;
      var usage = conversation.usage;
      ui.usage.textContent = usage ? util.number(usage.input_tokens) + " in · " + util.number(usage.output_tokens) + " out tokens" : "";
    }

    /* The settings form; fields the user is editing are left alone unless `force`. */
    function showSettings(settings, force) {
      if (force || !dirty) {
        ui.model.value = settings.model || "";
        ui.instructions.value = settings.instructions || "";
        ui.temperature.value = settings.temperature == null ? "" : String(settings.temperature);
        ui.maxTokens.value = settings.max_tokens == null ? "" : String(settings.max_tokens);
        ui.fallbackModels.value = notes.formatModels(settings.fallback_models);
        dirty = false;
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

    function note(text, isError) {
      ui.settingsNote.textContent = text;
      ui.settingsNote.className = "settings-note" + (isError ? " error" : " ok");
      ui.settingsNote.hidden = !text;
    }

    /* `conversation.updated`: the header, and the form (all of it, if it answers our save). */
    function updated(frame) {
      showConversation(frame.conversation);
      showSettings(frame.conversation.settings || {}, !!saveRef);
      if (saveRef) {
        saveRef = null;
        ui.settingsSave.disabled = false;
        note("Saved. The next answer uses these settings.", false);
      }
    }

    function handleError(frame) {
      if (!frame.ref || frame.ref !== saveRef) return false;
      saveRef = null;
      ui.settingsSave.disabled = false;
      note(frame.message, true);
      return true;
    }

    ui.settingsForm.addEventListener("input", function () { dirty = true; });
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
        fallback_models: notes.parseModels(ui.fallbackModels.value),
      };
      if (frame.temperature !== null && isNaN(frame.temperature)) return note("Temperature must be a number.", true);
      if (frame.max_tokens !== null && !Number.isInteger(frame.max_tokens)) return note("Max tokens must be a whole number.", true);
      // The server echoes client_id as the `ref` of an error, so a refusal lands here.
      saveRef = frame.client_id = p.uuid();
      if (!p.send(frame)) {
        saveRef = null;
        return note("Not connected; try again in a moment.", true);
      }
      ui.settingsSave.disabled = true;
      note("Saving…", false);
    });

    return { showConversation: showConversation, showSettings: showSettings, updated: updated, handleError: handleError };
  }

  root.NousChatSettings = { create: create };
})(window);
