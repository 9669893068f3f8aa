// The room page's typing logic (static/js/typing.js): `node --test tests/js/` (no npm install; run by tests/test_room_pages.py).
"use strict";
const test = require("node:test");
const assert = require("node:assert/strict");
const path = require("node:path");

const { typingLine, TypingSender } = require(path.join(__dirname, "..", "..", "static", "js", "typing.js"));

test("the typing line names at most two and never me", () => {
  assert.equal(typingLine([], "me"), "");
  assert.equal(typingLine(["me"], "me"), "");
  assert.equal(typingLine(["alice"], "me"), "alice is typing…");
  assert.equal(typingLine(["alice", "me", "bob"], "me"), "alice and bob are typing…");
  assert.equal(typingLine(["alice", "bob", "carol"], "me"), "alice, bob and carol are typing…");
  assert.equal(typingLine(["alice", "bob", "c", "d", "e"], "me"), "alice, bob and 3 others are typing…");
  assert.equal(typingLine(["alice", "alice"], "me"), "alice is typing…");
});

function harness(connected = true) {
  const clock = { t: 0, now() { return this.t; } };
  const sent = [];
  const sender = new TypingSender(on => { if (!connected) return false; sent.push(on); return true; }, clock, 2000);
  return { clock, sent, sender };
}

test("one true per 2 s while typing, false when cleared", () => {
  const { clock, sent, sender } = harness();
  sender.input("h");
  for (let t = 100; t < 2000; t += 100) { clock.t = t; sender.input("hello".slice(0, 1 + (t / 100) % 5)); }
  assert.deepEqual(sent, [true]);
  clock.t = 2000;
  sender.input("hello!");
  assert.deepEqual(sent, [true, true]);
  clock.t = 2500;
  sender.input("");
  assert.deepEqual(sent, [true, true, false]);
  sender.input("   ");
  sender.stop();
  assert.deepEqual(sent, [true, true, false], "false only once");
  clock.t = 2600;
  sender.input("again");
  assert.deepEqual(sent, [true, true, false, true], "typing again after clearing is news at once");
});

test("sent: false once; nothing when never typing", () => {
  const { sent, sender } = harness();
  sender.stop();
  assert.deepEqual(sent, []);
  sender.input("x");
  sender.stop();
  sender.stop();
  assert.deepEqual(sent, [true, false]);
});

test("not connected: tried again on the next keystroke; reset forgets", () => {
  const h = harness(false);
  h.sender.input("x");
  assert.equal(h.sender.active, false);
  const { clock, sent, sender } = harness();
  sender.input("x");
  clock.t = 500;
  sender.reset();
  sender.input("xy");
  assert.deepEqual(sent, [true, true]);
});
