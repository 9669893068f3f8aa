/* Nous Chat: the chat page for keyboard and screen-reader users.
 *
 * `NousA11y.create({input, composer, live, streaming, stop})`:
 * - Escape anywhere on the page stops a streaming answer (`stop()`), unless something else took
 *   that Escape first (a popover, an open <details>, an IME composition).
 * - When an answer ends the focus goes back to the message box, but only if it was in the
 *   composer (or nowhere: the box was disabled under it) — never away from a control the user
 *   moved to on purpose.
 * - `live` (a polite live region) announces "Writing an answer…" once, then the finished answer
 *   once, as plain text: announcing every delta would queue dozens of fragments that interrupt
 *   each other; the bubble itself is aria-busy while it streams.
 */
(function (root) {
  "use strict";

  var ANNOUNCE_MAX = 1200;

  function create(p) {
    function focusLeftForUs() {
      var active = document.activeElement;
      return !active || active === document.body || p.composer.contains(active);
    }

    document.addEventListener("keydown", function (event) {
      if (event.key !== "Escape" || event.defaultPrevented || event.isComposing) return;
      if (!p.streaming()) return;
      var openDetails = event.target.closest && event.target.closest("details[open]");
      if (openDetails) return;  // Escape in a settings panel is not a stop
      event.preventDefault();
      p.stop();
    });

    function announce(text) {
      p.live.textContent = "";
      // A new text node, a moment later: screen readers announce a change, not a reset.
      root.setTimeout(function () { p.live.textContent = text; }, 50);
    }

    /* A run started (or resumed) on this bubble. */
    function answerStarted(record) {
      if (record.el.getAttribute("aria-busy") === "true") return;
      record.el.setAttribute("aria-busy", "true");
      announce("Writing an answer…");
    }

    /* A run ended: `how` is "completed", "stopped" or "failed". */
    function answerEnded(record, how, errorText) {
      var wasBusy = record.el.getAttribute("aria-busy") === "true";
      record.el.removeAttribute("aria-busy");
      var text = (record.content.textContent || "").trim();
      if (text.length > ANNOUNCE_MAX) text = text.slice(0, ANNOUNCE_MAX) + "…";
      if (how === "failed") announce("The answer failed" + (errorText ? ": " + errorText : "."));
      else if (how === "stopped") announce("Answer stopped. " + text);
      else if (wasBusy) announce(text || "The answer is empty.");
    }

    /* After the composer unlocks (the input is enabled again). */
    function restoreFocus() {
      if (!p.input.disabled && focusLeftForUs()) p.input.focus();
    }

    return { answerStarted: answerStarted, answerEnded: answerEnded, restoreFocus: restoreFocus };
  }

  root.NousA11y = { create: create };
})(window);
