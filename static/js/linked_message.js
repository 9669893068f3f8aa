/* Nous Chat: a link to one message of a chat (?message=<id>, from the search page).
 *
 * `NousLinkedMessage.create({state, older, oldestId, atBottom, jump, loadOlder})` returns
 * `follow(frame)`, which the page calls with every frame: after `session.ready` and each `history`
 * page it scrolls to the message the link names and highlights it, loading older pages until it is
 * shown; past the conversation's start (or on a failed load) it gives up quietly.
 */
(function (root) {
  "use strict";

  function create(p) {
    var state = p.state;
    var linkedId = (root.location.search.match(/[?&]message=(\d+)(?:&|$)/) || [])[1] || null;

    return function follow(frame) {
      if (!linkedId || (frame.type !== "session.ready" && frame.type !== "history")) return;
      var record = state.records[linkedId];
      if (record) {
        linkedId = null;
        state.stick = false;
        record.el.scrollIntoView({ block: "center" });
        record.el.classList.add("highlighted");
        p.jump.hidden = p.atBottom();
        return;
      }
      var oldest = p.oldestId();
      if (!state.hasMore || !oldest || Number(oldest) <= Number(linkedId)) {
        linkedId = null;
        return;
      }
      if (!p.older.loading()) p.loadOlder.click();
    };
  }

  root.NousLinkedMessage = { create: create };
})(window);
