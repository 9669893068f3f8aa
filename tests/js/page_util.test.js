// The shared page helpers' pure logic: `node --test tests/js/` (run by tests/test_room_pages.py).
"use strict";
process.env.TZ = "UTC"; // the local time below is then 14:05:30 (as 14:05:30 or 02:05:30 PM, per locale)
const test = require("node:test");
const assert = require("node:assert/strict");
const path = require("node:path");

const { failureText } = require(path.join(__dirname, "..", "..", "static", "js", "page_util.js"));

test("an unavailable provider says when it will be tried again, in local time", () => {
  const error = { code: "provider_unavailable", message: "The anthropic provider is unavailable", retryable: true,
                  retry_after: 30, retry_at: "2026-12-03T14:05:30.000+00:00" };
  const line = failureText(error, "The answer failed.");
  assert.match(line, /^The anthropic provider is unavailable; it will be tried again at (14|02):05:30( PM)?$/);
});

test("other failures, or no usable retry_at, show the message or the fallback as they are", () => {
  assert.equal(failureText({ code: "overloaded", message: "Overloaded.", retry_at: "2026-12-03T14:05:30Z" }, "x"), "Overloaded.");
  assert.equal(failureText({ code: "provider_unavailable", message: "Down." }, "x"), "Down.");
  assert.equal(failureText({ code: "provider_unavailable", message: "Down.", retry_at: "soon" }, "x"), "Down.");
  assert.equal(failureText(undefined, "The answer failed."), "The answer failed.");
});
