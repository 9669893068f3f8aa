// The answer notes and the fallback models field: `node --test tests/js/` (run by tests/test_room_pages.py).
"use strict";
const test = require("node:test");
const assert = require("node:assert/strict");
const path = require("node:path");

const { noteLines, parseModels, formatModels } = require(path.join(__dirname, "..", "..", "static", "js", "answer_notes.js"));

test("an answer of the first model, with its whole history, has no notes", () => {
  assert.deepEqual(noteLines(null), []);
  assert.deepEqual(noteLines({ model: "test:", fallback_model: null, trimmed_messages: 0 }), []);
});

test("a fallback answer and a trimmed history are said in words", () => {
  assert.deepEqual(noteLines({ fallback_model: "openai:gpt-4o", trimmed_messages: 12 }), [
    "answered by openai:gpt-4o", "12 older messages were left out of the model's context"]);
  assert.deepEqual(noteLines({ trimmed_messages: 1 }), ["1 older message was left out of the model's context"]);
});

test("fallback models are one a line, commas inside a model string kept", () => {
  assert.deepEqual(parseModels(" test:tps=50,words=120 \n\n openai:gpt-4o\n"), ["test:tps=50,words=120", "openai:gpt-4o"]);
  assert.deepEqual(parseModels(""), []);
  assert.equal(formatModels(["a:b", "c:d"]), "a:b\nc:d");
  assert.equal(formatModels(null), "");
});
