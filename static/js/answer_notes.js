/* Nous Chat: the notes under an answer that say how it came to be (the tokens it used, which
 * fallback model answered, how many older messages the model did not see), and the settings
 * panel's fallback models field.
 * Read from the message's `provenance`, so they show live (run.completed) and after a reload.
 *
 * Exported as `NousAnswerNotes` (and as a CommonJS module under `node --test`). Text only.
 */
(function (root) {
  "use strict";

  /* The note lines of one message's provenance; none for an answer of the first model, untrimmed. */
  function noteLines(provenance) {
    var lines = [];
    if (!provenance) return lines;
    if (provenance.fallback_model) lines.push("answered by " + provenance.fallback_model);
    var left = provenance.trimmed_messages;
    if (left > 0) {
      lines.push(left + (left === 1 ? " older message was" : " older messages were") + " left out of the model's context");
    }
    return lines;
  }

  /* Show (or clear) the notes of a bubble `record` ({el, message}); the element is made on first need. */
  function render(record) {
    var lines = noteLines(record.message && record.message.provenance);
    if (!record.notes) {
      if (!lines.length) return;
      record.notes = document.createElement("div");
      record.notes.className = "answer-notes";
      record.el.appendChild(record.notes);
    }
    record.notes.textContent = "";
    lines.forEach(function (line) {
      var note = document.createElement("p");
      note.className = "answer-note";
      note.textContent = line;
      record.notes.appendChild(note);
    });
    record.notes.hidden = !lines.length;
  }

  /* The token usage line of an assistant bubble (`record.usage`, made by the page), hidden without usage. */
  function renderUsage(record) {
    var usage = record.message.usage;
    record.usage.textContent = "";
    record.usage.hidden = !(usage && record.message.role === "assistant");
    if (record.usage.hidden) return;
    var number = root.NousPage.number;  // static/js/page_util.js
    [["in", usage.input_tokens], ["out", usage.output_tokens], ["total", usage.total_tokens]].forEach(function (part) {
      var span = document.createElement("span");
      span.className = "usage-" + part[0];
      span.textContent = part[0] + " " + number(part[1]);
      record.usage.appendChild(span);
    });
    record.usage.appendChild(document.createTextNode(" tokens"));
  }

  /* The fallback models field holds one model string a line (model strings may contain commas). */
  function parseModels(text) {
    return String(text || "").split("\n").map(function (line) { return line.trim(); }).filter(Boolean);
  }

  function formatModels(models) {
    return (models || []).join("\n");
  }

  var api = { noteLines: noteLines, render: render, renderUsage: renderUsage, parseModels: parseModels, formatModels: formatModels };
  if (typeof module === "object" && module.exports) module.exports = api;
  if (root) root.NousAnswerNotes = api;
})(typeof window !== "undefined" ? window : null);
