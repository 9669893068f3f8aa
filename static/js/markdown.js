/* Nous Chat: the one markdown renderer (chat, rooms, the shared page).
 *
 * `NousMarkdown.render(text)` returns a DocumentFragment: markdown-it (vendored, raw HTML off, so
 * markup in the text stays text; linkify, tables, strikethrough, line breaks), then DOMPurify with a
 * strict allow-list (no style, no event handlers, links to http(s) and mailto only), then
 * highlight.js on fenced code with a language and a Copy button on every code block. Images are
 * shown as links (no remote image loads from a message). Needs static/vendor/{markdown-it,
 * dompurify,highlightjs} loaded first.
 */
(function (root) {
  "use strict";

  var ALLOWED_TAGS = ["p", "br", "strong", "em", "del", "s", "code", "pre", "blockquote", "ul", "ol", "li", "a",
                      "h1", "h2", "h3", "h4", "h5", "h6", "hr", "table", "thead", "tbody", "tr", "th", "td", "span"];
  var ALLOWED_ATTR = ["href", "title", "class", "start"];
  // DOMPurify's default minus the other schemes (it tests every attribute's value with it, `start`
  // too); `finish` then keeps only absolute http(s) and mailto hrefs.
  var SAFE_URL = /^(?:(?:https?|mailto):|[^a-z]|[a-z+.\-]+(?:[^a-z+.\-:]|$))/i;
  var BLOCK_PARENTS = { UL: 1, OL: 1, BLOCKQUOTE: 1, TABLE: 1, THEAD: 1, TBODY: 1, TR: 1 };
  var SAFE_CLASS = /^(?:hljs(?:-[\w-]+)?|language-[\w+#.-]+|align-(?:left|center|right))$/;
  var COPIED_MS = 1500;

  function safeUrl(raw) {
    if (!/^(?:https?:\/\/|mailto:)/i.test(raw)) return null;
    try {
      var url = new URL(raw);
      return ["http:", "https:", "mailto:"].indexOf(url.protocol) >= 0 ? url.href : null;
    } catch (err) {
      return null;
    }
  }

  function highlight(code, lang) {
    var hljs = root.hljs;
    if (!hljs || !lang || !hljs.getLanguage(lang)) return "";  // "": markdown-it escapes it
    try {
      return hljs.highlight(code, { language: lang, ignoreIllegals: true }).value;
    } catch (err) {
      return "";
    }
  }

  function makeParser() {
    var md = root.markdownit({ html: false, linkify: true, breaks: true, typographer: false, highlight: highlight });
    md.validateLink = function (url) { return safeUrl(String(url).trim()) !== null; };
    var escape = md.utils.escapeHtml;
    // An image becomes a link to it: no request to a URL a message chose.
    md.renderer.rules.image = function (tokens, idx) {
      var token = tokens[idx];
      var label = escape(token.content || token.attrGet("src"));
      return '<a href="' + escape(token.attrGet("src")) + '">' + label + "</a>";
    };
    // Table alignment as a class: style attributes are not allowed through.
    md.core.ruler.push("align_as_class", function (state) {
      state.tokens.forEach(function (token) {
        if (token.type !== "th_open" && token.type !== "td_open") return;
        var style = token.attrGet("style") || "";
        var align = /text-align:\s*(left|center|right)/.exec(style);
        token.attrs = null;
        if (align) token.attrSet("class", "align-" + align[1]);
      });
    });
    return md;
  }

  var parser = null;
  var ownDocument = typeof document !== "undefined" ? document : null;

  function sanitize(html) {
    return root.DOMPurify.sanitize(html, {
      ALLOWED_TAGS: ALLOWED_TAGS, ALLOWED_ATTR: ALLOWED_ATTR, ALLOWED_URI_REGEXP: SAFE_URL,
      ALLOW_DATA_ATTR: false, ALLOW_ARIA_ATTR: false, RETURN_DOM_FRAGMENT: true,
    });
  }

  /* What DOMPurify kept, finished: link targets, known classes only, code blocks with Copy. */
  function finish(fragment) {
    dropLayoutWhitespace(fragment);
    Array.prototype.forEach.call(fragment.querySelectorAll("a"), function (a) {
      var href = a.getAttribute("href");
      if (!href || !safeUrl(href)) {
        a.removeAttribute("href");
        return;
      }
      a.setAttribute("rel", "noopener noreferrer nofollow");
      a.setAttribute("target", "_blank");
    });
    Array.prototype.forEach.call(fragment.querySelectorAll("[class]"), function (node) {
      var kept = node.className.split(/\s+/).filter(function (name) { return SAFE_CLASS.test(name); });
      if (kept.length) node.className = kept.join(" ");
      else node.removeAttribute("class");
    });
    Array.prototype.forEach.call(fragment.querySelectorAll("pre"), codeBlock);
    return fragment;
  }

  /* markdown-it puts a newline after every block tag: between blocks (and after a <br>) it is
   * layout, not text, and would make the bubble's text differ from the message's. */
  function dropLayoutWhitespace(node) {
    Array.prototype.slice.call(node.childNodes).forEach(function (child) {
      if (child.nodeType === 3) {
        var between = node.nodeType === 11 || BLOCK_PARENTS[node.nodeName];
        if (between && !child.data.trim()) child.remove();
        else if (child.previousSibling && child.previousSibling.nodeName === "BR" && child.data[0] === "\n") {
          child.data = child.data.slice(1);
        }
      } else if (child.nodeType === 1 && child.nodeName !== "PRE") {
        dropLayoutWhitespace(child);
      }
    });
  }

  /* A <pre> inside a box with its language and a Copy button. */
  function codeBlock(pre) {
    var code = pre.querySelector("code");
    if (!code) return;
    code.classList.add("hljs");
    var last = code.lastChild;
    while (last && last.nodeType === 1) last = last.lastChild;
    if (last && last.nodeType === 3 && /\n$/.test(last.data)) last.data = last.data.slice(0, -1);
    var box = ownDocument.createElement("div");
    box.className = "code-block";
    var bar = ownDocument.createElement("div");
    bar.className = "code-bar";
    var lang = /(?:^|\s)language-([\w+#.-]+)/.exec(code.className);
    var label = ownDocument.createElement("span");
    label.className = "code-lang";
    label.textContent = lang ? lang[1] : "";
    var copy = ownDocument.createElement("button");
    copy.type = "button";
    copy.className = "code-copy";
    copy.textContent = "Copy";
    copy.setAttribute("aria-label", "Copy code");
    copy.addEventListener("click", function () { copyText(code.textContent, copy); });
    bar.appendChild(label);
    bar.appendChild(copy);
    pre.parentNode.insertBefore(box, pre);
    box.appendChild(bar);
    box.appendChild(pre);
  }

  function copyText(text, button) {
    function done(ok) {
      button.textContent = ok ? "Copied" : "Copy failed";
      button.dataset.copied = ok ? "true" : "false";
      root.setTimeout(function () {
        button.textContent = "Copy";
        delete button.dataset.copied;
      }, COPIED_MS);
    }
    var clipboard = root.navigator && root.navigator.clipboard;
    if (clipboard && root.isSecureContext) {
      clipboard.writeText(text).then(function () { done(true); }, function () { done(fallbackCopy(text)); });
    } else {
      done(fallbackCopy(text));
    }
  }

  /* Plain http (no clipboard API): a hidden textarea and execCommand. */
  function fallbackCopy(text) {
    var area = ownDocument.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.className = "copy-buffer";
    ownDocument.body.appendChild(area);
    area.select();
    var ok = false;
    try { ok = ownDocument.execCommand("copy"); } catch (err) { ok = false; }
    area.remove();
    return ok;
  }

  function render(text) {
    if (!parser) parser = makeParser();
    var html = parser.render(String(text == null ? "" : text));
    var fragment = sanitize(html);
    if (fragment.ownerDocument !== ownDocument) fragment = ownDocument.importNode(fragment, true);
    return finish(fragment);
  }

  root.NousMarkdown = { render: render, safeUrl: safeUrl };
})(window);
