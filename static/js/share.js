/* Nous Chat: a shared conversation, read-only.
 *
 * The messages arrive through json_script "shared-data" and are drawn like the chat page draws
 * them: markdown through static/js/markdown.js, error text through textContent, never innerHTML.
 */
(function () {
  "use strict";

  var data = JSON.parse(document.getElementById("shared-data").textContent);
  var list = document.getElementById("message-list");
  var ROLE_NAMES = { assistant: "Assistant", error: "Error", tool: "Tool" };
  var BADGES = { stopped: "stopped", failed: "failed", streaming: "writing…" };

  function make(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text != null) node.textContent = text;
    return node;
  }

  function formatTime(iso) {
    var date = new Date(iso);
    return isNaN(date.getTime()) ? "" : date.toLocaleString([], { dateStyle: "medium", timeStyle: "short" });
  }

  /* A stored tool message holds its call and result as JSON: shown as the chat page shows it. */
  function toolText(content) {
    var call;
    try { call = JSON.parse(content); } catch (err) { return content; }
    if (!call || typeof call !== "object") return content;
    return "Calling tool `" + (call.name || "?") + "`" + (call.is_error ? " failed: " : " → ") + String(call.result);
  }

  function draw(message) {
    var article = make("article", "message");
    article.dataset.role = message.role;
    article.dataset.status = message.status;
    var meta = make("div", "meta");
    meta.appendChild(make("span", "author", ROLE_NAMES[message.role] || message.author));
    if (BADGES[message.status]) meta.appendChild(make("span", "badge badge-" + message.status, BADGES[message.status]));
    var time = make("time", "time", formatTime(message.created_at));
    time.setAttribute("datetime", message.created_at);
    meta.appendChild(time);
    var content = make("div", "content");
    if (message.role === "error") {
      content.appendChild(make("p", null, message.content));
    } else {
      var text = message.role === "tool" ? toolText(message.content) : message.content;
      content.appendChild(window.NousMarkdown.render(text));
    }
    article.appendChild(meta);
    article.appendChild(content);
    if (!message.content) article.classList.add("empty");
    return article;
  }

  data.messages.forEach(function (message) { list.appendChild(draw(message)); });
  document.getElementById("shared-empty").hidden = data.messages.length > 0;
})();
