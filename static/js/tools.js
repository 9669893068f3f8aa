/* Nous Chat: tool calls as one collapsed line under the run's answer ("used calculator"), which
 * expands (a <details>) to the arguments and the result. Used by the room page.
 *
 * `NousTools.create(recordOf)`: `recordOf(run_id)` is the run's answer record, or null when it is
 * not shown yet; lines for such a run wait and are put in by `adopt(record)`.
 * Takes `run.tool_call`, `run.tool_result` and stored tool messages (JSON, see
 * chat/runs/lifecycle.py store_tool_message). Server text by textContent only.
 */
(function (root) {
  "use strict";

  var make = window.NousPage.make;  // static/js/page_util.js, loaded first

  function pretty(value) {
    if (typeof value === "string") return value;
    try { return JSON.stringify(value, null, 2); } catch (err) { return String(value); }
  }

  function create(recordOf) {
    var lines = {};    // tool_call_id -> line
    var waiting = {};  // run_id -> [line] not placed yet

    function line(runId, id, name) {
      if (lines[id]) return lines[id];
      var details = make("details", "tool-line");
      details.dataset.toolCallId = id;
      var summary = make("summary", null, "used " + (name || "a tool"));
      var body = make("div", "tool-detail");
      body.appendChild(make("div", "tool-label", "Arguments"));
      var args = make("pre", "tool-arguments");
      body.appendChild(args);
      var resultLabel = make("div", "tool-label", "Result");
      var result = make("pre", "tool-result", "…");
      body.appendChild(resultLabel);
      body.appendChild(result);
      details.appendChild(summary);
      details.appendChild(body);
      lines[id] = { el: details, summary: summary, args: args, result: result, name: name, runId: runId };
      place(lines[id]);
      return lines[id];
    }

    function place(item) {
      var record = recordOf(item.runId);
      if (!record) {
        (waiting[item.runId] = waiting[item.runId] || []).push(item);
        return;
      }
      if (!record.toolLines) {
        record.toolLines = make("div", "tool-lines");
        record.el.insertBefore(record.toolLines, record.content);
      }
      record.toolLines.appendChild(item.el);
    }

    function setResult(item, result, isError) {
      item.result.textContent = pretty(result);
      item.el.dataset.status = isError ? "failed" : "complete";
      item.summary.textContent = (isError ? "tried " : "used ") + (item.name || "a tool") + (isError ? " (failed)" : "");
    }

    return {
      call: function (frame) {
        var call = frame.tool_call || {};
        if (!call.id) return;
        line(frame.run_id, call.id, call.name).args.textContent = pretty(call.arguments || {});
      },
      result: function (frame) {
        var item = lines[frame.tool_call_id];
        if (item) setResult(item, frame.result, frame.is_error);
      },
      /* A stored tool message; true if it was one (it needs no bubble of its own). */
      stored: function (message) {
        if (message.role !== "tool") return false;
        var call;
        try { call = JSON.parse(message.content); } catch (err) { return false; }
        if (!call || typeof call !== "object" || !call.tool_call_id) return false;
        var item = line(message.run_id, call.tool_call_id, call.name);
        item.args.textContent = pretty(call.arguments || {});
        setResult(item, call.result, call.is_error);
        return true;
      },
      adopt: function (record) {
        var items = record.runId && waiting[record.runId];
        if (!items) return;
        delete waiting[record.runId];
        items.forEach(place);
      },
    };
  }

  root.NousTools = { create: create };
})(window);
