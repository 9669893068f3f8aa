/* Nous Chat: how an answer came to be, on demand.
 *
 * `NousProvenance.show(record)` gives an assistant bubble whose message carries `provenance`
 * (chat/runs/lifecycle.py provenance_of) an "i" button in its meta line that opens a small
 * disclosure: model, fallback model, time to first token, duration, tokens in and out, retries,
 * how it ended, trimmed messages. A button with aria-expanded; Escape closes it and gives the
 * focus back to the button. All server text goes in by textContent.
 */
(function (root) {
  "use strict";

  var make = window.NousPage.make;  // static/js/page_util.js, loaded first

  function ms(value) {
    if (typeof value !== "number") return null;
    return value < 1000 ? value + " ms" : (value / 1000).toFixed(value < 10000 ? 2 : 1) + " s";
  }

  function count(value) {
    return typeof value === "number" ? value.toLocaleString() : null;
  }

  function endedText(ended) {
    if (!ended || !ended.status) return null;
    if (ended.status === "completed") return "completed";
    if (ended.status === "stopped") return ended.by ? "stopped by " + ended.by : "stopped";
    if (ended.status === "failed") return "failed: " + (ended.code || "internal");
    return String(ended.status);
  }

  /* The rows shown, [label, text, key]; a value the run did not record is left out. */
  function rows(p) {
    var tokens = p.input_tokens == null && p.output_tokens == null ? null
      : (count(p.input_tokens) || "?") + " in · " + (count(p.output_tokens) || "?") + " out";
    return [
      ["Model", p.model || null, "model"],
      ["Fallback model", p.fallback_model || null, "fallback"],
      ["Time to first token", ms(p.time_to_first_token_ms), "ttft"],
      ["Duration", ms(p.duration_ms), "duration"],
      ["Tokens", tokens, "tokens"],
      ["Retries", typeof p.retries === "number" ? String(p.retries) : null, "retries"],
      ["Ended", endedText(p.ended), "ended"],
      ["Trimmed messages", p.trimmed_messages ? count(p.trimmed_messages) : null, "trimmed"],
    ].filter(function (row) { return row[1] !== null; });
  }

  var next = 0;

  function show(record) {
    var p = record.message && record.message.provenance;
    if (!p || record.message.role !== "assistant") {
      if (record.provenance) record.provenance.button.hidden = true;
      return;
    }
    if (!record.provenance) record.provenance = build(record);
    var box = record.provenance;
    box.button.hidden = false;
    box.list.textContent = "";
    rows(p).forEach(function (row) {
      var dt = make("dt", null, row[0]);
      var dd = make("dd", null, row[1]);
      dd.dataset.field = row[2];
      box.list.appendChild(dt);
      box.list.appendChild(dd);
    });
  }

  function build(record) {
    var id = "provenance-" + (++next);
    var button = make("button", "provenance-toggle", "i");
    button.type = "button";
    button.title = "About this answer";
    button.setAttribute("aria-label", "About this answer");
    button.setAttribute("aria-expanded", "false");
    button.setAttribute("aria-controls", id);
    var panel = make("div", "provenance");
    panel.id = id;
    panel.hidden = true;
    panel.setAttribute("role", "group");
    panel.setAttribute("aria-label", "About this answer");
    var list = make("dl");
    panel.appendChild(list);
    function open(on) {
      panel.hidden = !on;
      button.setAttribute("aria-expanded", on ? "true" : "false");
    }
    button.addEventListener("click", function () { open(panel.hidden); });
    record.el.addEventListener("keydown", function (event) {
      if (event.key !== "Escape" || panel.hidden) return;
      event.preventDefault();  // this Escape closes the details; it does not stop an answer
      event.stopPropagation();
      open(false);
      button.focus();
    });
    var meta = record.time.parentNode;
    meta.appendChild(button);
    meta.parentNode.insertBefore(panel, meta.nextSibling);
    return { button: button, panel: panel, list: list, open: open };
  }

  root.NousProvenance = { show: show, rows: rows };
})(window);
