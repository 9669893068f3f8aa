/* Nous Chat: the chat's tool calls, a line each in the list: "Calling tool `name`" on
 * `run.tool_call`, its result appended on `run.tool_result`, and a stored tool message (its call
 * and result as JSON) shown the same way after a reload.
 *
 * `NousChatTools.create({state, upsert, applyMessage})`: `shown(message)` is the message to show
 * for a stored one (the same message unless it is a tool message), `call(frame)` and
 * `result(frame)` take the live frames. The bubble of a call has the id "tool-<tool_call_id>".
 */
(function (root) {
  "use strict";

  function create(p) {
    function shown(message) {
      if (message.role !== "tool") return message;
      var call;
      try { call = JSON.parse(message.content); } catch (err) { return message; }
      if (!call || typeof call !== "object" || !call.tool_call_id) return message;
      var copy = {};
      Object.keys(message).forEach(function (key) { copy[key] = message[key]; });
      copy.id = "tool-" + call.tool_call_id;
      copy.content = "Calling tool `" + (call.name || "?") + "`" + (call.is_error ? " failed: " : " → ") + String(call.result);
      copy.status = call.is_error ? "failed" : "complete";
      return copy;
    }

    function call(frame) {
      var toolCall = frame.tool_call || {};
      p.upsert({ id: "tool-" + toolCall.id, role: "tool", status: "complete", author: "tool",
                 content: "Calling tool `" + (toolCall.name || "?") + "`" });
    }

    function result(frame) {
      var record = p.state.records["tool-" + frame.tool_call_id];
      if (record) {
        p.applyMessage(record, { content: record.text + (frame.is_error ? " failed: " : " → ") + frame.result,
                                 status: frame.is_error ? "failed" : "complete" });
      }
    }

    return { shown: shown, call: call, result: result };
  }

  root.NousChatTools = { create: create };
})(window);
