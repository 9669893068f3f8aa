/* Nous Chat: a small, safe markdown renderer.
 *
 * `NousMarkdown.render(text)` returns a DocumentFragment built with createElement, textContent and
 * createTextNode only: server text never goes through innerHTML, so markup in it stays text.
 * Supported: ``` fenced code (verbatim, `language-x` class), `inline code`, **bold**, *italic*,
 * paragraphs and line breaks, - / * / + bullet and 1. numbered lists, [text](http(s) url) links,
 * # to ### headings. Anything else is plain text. An unclosed fence (a streaming answer) renders
 * as code up to the end.
 */
(function () {
  "use strict";

  var FENCE = /^ {0,3}```\s*([\w+#.-]*)\s*$/;
  var FENCE_END = /^ {0,3}```\s*$/;
  var HEADING = /^(#{1,3})\s+(.*?)\s*#*\s*$/;
  var BULLET = /^\s{0,3}[-*+]\s+(.*)$/;
  var NUMBERED = /^\s{0,3}(\d{1,9})[.)]\s+(.*)$/;
  var LINK = /^\[([^\]\n]+)\]\(\s*([^\s()]+)\s*\)/;

  function el(tag, className) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    return node;
  }

  function safeUrl(raw) {
    if (!/^https?:\/\//i.test(raw)) return null;
    try {
      var url = new URL(raw);
      return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
    } catch (err) {
      return null;
    }
  }

  /* Inline markup of one line (or a paragraph's lines joined by \n) into `parent`. */
  function inline(text, parent) {
    var plain = "";
    function flush() {
      if (plain) parent.appendChild(document.createTextNode(plain));
      plain = "";
    }
    var i = 0;
    while (i < text.length) {
      var ch = text[i];
      if (ch === "\n") {
        flush();
        parent.appendChild(el("br"));
        i += 1;
        continue;
      }
      if (ch === "`") {
        var close = text.indexOf("`", i + 1);
        if (close > i + 1) {
          flush();
          var code = el("code");
          code.textContent = text.slice(i + 1, close);
          parent.appendChild(code);
          i = close + 1;
          continue;
        }
      }
      if (ch === "*" && text[i + 1] === "*") {
        var end = text.indexOf("**", i + 2);
        if (end > i + 2 && !/\s/.test(text[i + 2]) && !/\s/.test(text[end - 1])) {
          flush();
          var strong = el("strong");
          inline(text.slice(i + 2, end), strong);
          parent.appendChild(strong);
          i = end + 2;
          continue;
        }
      }
      if (ch === "*" && text[i + 1] !== "*" && text[i + 1] && !/\s/.test(text[i + 1])) {
        var stop = findEmphasisEnd(text, i + 1);
        if (stop > 0) {
          flush();
          var em = el("em");
          inline(text.slice(i + 1, stop), em);
          parent.appendChild(em);
          i = stop + 1;
          continue;
        }
      }
      if (ch === "[") {
        var match = LINK.exec(text.slice(i));
        var href = match && safeUrl(match[2]);
        if (href) {
          flush();
          var a = el("a");
          a.setAttribute("href", href);
          a.setAttribute("rel", "noopener noreferrer");
          a.setAttribute("target", "_blank");
          inline(match[1], a);
          parent.appendChild(a);
          i += match[0].length;
          continue;
        }
      }
      plain += ch;
      i += 1;
    }
    flush();
  }

  /* The closing single * of an emphasis opened before `from`: not doubled, not after a space. */
  function findEmphasisEnd(text, from) {
    for (var j = from + 1; j < text.length; j++) {
      if (text[j] === "\n") return -1;
      if (text[j] === "*" && text[j + 1] !== "*" && text[j - 1] !== "*" && !/\s/.test(text[j - 1])) return j;
      if (text[j] === "*" && text[j + 1] === "*") j += 1;  // skip a ** pair
    }
    return -1;
  }

  function render(text) {
    var fragment = document.createDocumentFragment();
    var lines = String(text == null ? "" : text).replace(/\r\n?/g, "\n").split("\n");
    var paragraph = [];
    var list = null;  // {node, ordered}

    function endParagraph() {
      if (!paragraph.length) return;
      var p = el("p");
      inline(paragraph.join("\n"), p);
      fragment.appendChild(p);
      paragraph = [];
    }
    function endList() { list = null; }
    function endBlocks() { endParagraph(); endList(); }

    for (var n = 0; n < lines.length; n++) {
      var line = lines[n];
      var fence = FENCE.exec(line);
      if (fence) {
        endBlocks();
        var body = [];
        n += 1;
        while (n < lines.length && !FENCE_END.test(lines[n])) {
          body.push(lines[n]);
          n += 1;
        }
        var pre = el("pre");
        var code = el("code", fence[1] ? "language-" + fence[1] : "");
        code.textContent = body.join("\n");
        pre.appendChild(code);
        fragment.appendChild(pre);
        continue;
      }
      if (!line.trim()) {
        endBlocks();
        continue;
      }
      var heading = HEADING.exec(line);
      if (heading) {
        endBlocks();
        var h = el("h" + heading[1].length);
        inline(heading[2], h);
        fragment.appendChild(h);
        continue;
      }
      var bullet = BULLET.exec(line);
      var numbered = bullet ? null : NUMBERED.exec(line);
      if (bullet || numbered) {
        endParagraph();
        var ordered = !!numbered;
        if (!list || list.ordered !== ordered) {
          list = { node: el(ordered ? "ol" : "ul"), ordered: ordered };
          if (ordered && numbered[1] !== "1") list.node.setAttribute("start", String(parseInt(numbered[1], 10)));
          fragment.appendChild(list.node);
        }
        var item = el("li");
        inline(ordered ? numbered[2] : bullet[1], item);
        list.node.appendChild(item);
        continue;
      }
      if (list && /^\s{2,}\S/.test(line)) {
        // An indented line continues the last list item.
        var last = list.node.lastChild;
        last.appendChild(el("br"));
        inline(line.trim(), last);
        continue;
      }
      endList();
      paragraph.push(line);
    }
    endBlocks();
    return fragment;
  }

  window.NousMarkdown = { render: render, safeUrl: safeUrl };
})();
