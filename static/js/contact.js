/* Nous Chat: the contact form's AI suggestions.
 *
 * The form is a plain POST and works without this file; nothing here touches submitting. While
 * the user types a message longer than 20 characters, `Suggester` waits for a pause (debounce),
 * keeps at most one request in flight (the newest text goes once it returns), and drops an answer
 * whose text is no longer the message. Errors only hide the suggestions. Server text is shown
 * through textContent.
 *
 * `Suggester` is pure (clock and request function injected) and exported as `NousContact` (and as
 * a CommonJS module); the page code runs only where there is page data.
 */
(function (root) {
  "use strict";

  var MAX_SUGGESTIONS = 3;

  /* `options.request(text)` returns a promise of a list of strings; `options.show(list)` renders
   * one ([] hides); `options.clock` is {setTimeout, clearTimeout}. */
  function Suggester(options) {
    this.request = options.request;
    this.show = options.show;
    this.clock = options.clock;
    this.debounceMs = options.debounceMs || 600;
    this.minChars = options.minChars || 21;
    this.text = "";
    this.timer = null;
    this.inFlight = null;   // the text of the request in flight, or null
    this.due = false;       // the pause ended while a request was in flight
  }

  Suggester.prototype.long = function (text) {
    return text.trim().length >= this.minChars;
  };

  /* The message changed. */
  Suggester.prototype.input = function (text) {
    this.text = String(text || "");
    if (this.timer !== null) this.clock.clearTimeout(this.timer);
    this.timer = null;
    this.due = false;
    if (!this.long(this.text)) {
      this.show([]);
      return;
    }
    var self = this;
    this.timer = this.clock.setTimeout(function () {
      self.timer = null;
      self.paused();
    }, this.debounceMs);
  };

  Suggester.prototype.paused = function () {
    if (this.inFlight !== null) {
      this.due = true;
      return;
    }
    this.send(this.text);
  };

  Suggester.prototype.send = function (text) {
    var self = this;
    this.inFlight = text;
    this.due = false;
    var done = function (list) {
      // Stale: the user typed on, so these suggestions are for a message that is gone.
      if (text === self.text) self.show(list);
      self.inFlight = null;
      if (self.due && self.text !== text && self.long(self.text)) self.send(self.text);
      self.due = false;
    };
    var answer;
    try {
      answer = Promise.resolve(this.request(text));
    } catch (error) {
      answer = Promise.reject(error);
    }
    answer.then(function (list) {
      done(cleanList(list));
    }, function () {
      done([]);
    });
  };

  /* At most 3 non-empty strings from whatever the server sent. */
  function cleanList(list) {
    if (!Array.isArray(list)) return [];
    return list.filter(function (s) { return typeof s === "string" && s.trim(); }).slice(0, MAX_SUGGESTIONS);
  }

  var api = { Suggester: Suggester, cleanList: cleanList, MAX_SUGGESTIONS: MAX_SUGGESTIONS };
  if (typeof module === "object" && module.exports) module.exports = api;
  if (root) root.NousContact = api;
  if (!root || !root.document || !root.document.getElementById("contact-data")) return;

  // --- the page ---------------------------------------------------------------------------

  var data = JSON.parse(document.getElementById("contact-data").textContent);
  var form = document.getElementById("contact-form");
  var messageField = form.elements.message;
  var nameField = form.elements.name;
  var csrfToken = form.elements.csrfmiddlewaretoken.value;
  var box = document.getElementById("suggestions-box");
  var list = document.getElementById("suggestions");

  function show(suggestions) {
    var items = suggestions.map(function (text) {
      var li = document.createElement("li");
      li.textContent = text;
      return li;
    });
    list.replaceChildren.apply(list, items);
    box.hidden = items.length === 0;
  }

  function request(text) {
    return fetch(data.suggest_url, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken },
      credentials: "same-origin",
      body: JSON.stringify({ message: text, name: nameField.value }),
    }).then(function (response) {
      if (!response.ok) throw new Error("suggestions: HTTP " + response.status);
      return response.json();
    }).then(function (body) {
      return body && body.suggestions;
    });
  }

  var browserClock = {
    setTimeout: function (fn, ms) { return window.setTimeout(fn, ms); },
    clearTimeout: function (id) { window.clearTimeout(id); },
  };
  var suggester = new Suggester({
    request: request, show: show, clock: browserClock, debounceMs: data.debounce_ms, minChars: data.min_chars,
  });
  messageField.addEventListener("input", function () { suggester.input(messageField.value); });
  api.page = suggester;
})(typeof window !== "undefined" ? window : null);
