/* Nous Chat: attachments on the conversation page.
 *
 * The attach button uploads each chosen file at once (fetch, multipart, the CSRF token) and shows
 * it as a chip until the message is sent; a chip can be removed before that. A refused upload
 * says why next to the composer. Bubbles show a message's attachments: an image as a thumbnail
 * linking to the file, a text file as a link with its name and size. All names via textContent.
 */
(function () {
  "use strict";

  var make = window.NousPage.make;  // static/js/page_util.js, loaded first

  function humanSize(bytes) {
    if (bytes < 1024) return bytes + " B";
    if (bytes < 1024 * 1024) return (bytes / 1024).toFixed(bytes < 10240 ? 1 : 0) + " KB";
    return (bytes / (1024 * 1024)).toFixed(1) + " MB";
  }

  function csrfToken() {
    var field = document.querySelector("input[name=csrfmiddlewaretoken]");
    if (field) return field.value;
    var match = document.cookie.match(/(?:^|; )csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  }

  /* The composer's pending uploads. `config`: {upload_url, accept, max_per_message}. */
  function Composer(config, els, onChange) {
    this.config = config;
    this.els = els;  // {button, input, chips, error}
    this.items = [];  // {key, name, size, attachment (once stored), chip}
    this.onChange = onChange || function () {};
    var self = this;
    els.input.setAttribute("accept", config.accept || "");
    els.button.addEventListener("click", function () { els.input.click(); });
    els.input.addEventListener("change", function () {
      Array.prototype.forEach.call(els.input.files, function (file) { self.add(file); });
      els.input.value = "";
    });
  }

  Composer.prototype.add = function (file) {
    this.showError("");
    if (this.items.length >= this.config.max_per_message) {
      this.showError("At most " + this.config.max_per_message + " attachments per message.");
      return;
    }
    var self = this;
    var item = { name: file.name, size: file.size, attachment: null, chip: null, removed: false };
    item.chip = this.chip(item);
    this.items.push(item);
    this.redraw();
    var body = new FormData();
    body.append("file", file);
    fetch(this.config.upload_url, {
      method: "POST", body: body, credentials: "same-origin", headers: { "X-CSRFToken": csrfToken() },
    }).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (json) {
        return { ok: response.ok, status: response.status, json: json };
      });
    }).then(function (result) {
      if (!result.ok) {
        var why = result.json.error ? result.json.error.message : "The upload failed (HTTP " + result.status + ")";
        self.drop(item);
        self.showError(file.name + ": " + why);
        return;
      }
      item.attachment = result.json;
      if (item.removed) self.forget(item);
      self.redraw();
    }).catch(function () {
      self.drop(item);
      self.showError(file.name + ": the upload failed; check the connection and try again.");
    });
  };

  Composer.prototype.chip = function (item) {
    var self = this;
    var chip = make("span", "attachment-chip");
    chip.appendChild(make("span", "attachment-chip-name", item.name));
    chip.appendChild(make("span", "attachment-chip-size", humanSize(item.size)));
    var remove = make("button", "attachment-chip-remove", "×");
    remove.type = "button";
    remove.setAttribute("aria-label", "Remove " + item.name);
    remove.addEventListener("click", function () {
      item.removed = true;
      self.drop(item);
      if (item.attachment) self.forget(item);
    });
    chip.appendChild(remove);
    return chip;
  };

  /* Delete an unsent upload on the server (best effort: the daily clean-up gets the rest). */
  Composer.prototype.forget = function (item) {
    fetch(item.attachment.url, { method: "DELETE", credentials: "same-origin", headers: { "X-CSRFToken": csrfToken() } })
      .catch(function () {});
  };

  Composer.prototype.drop = function (item) {
    this.items = this.items.filter(function (other) { return other !== item; });
    this.redraw();
  };

  Composer.prototype.redraw = function () {
    var chips = this.els.chips;
    chips.textContent = "";
    this.items.forEach(function (item) {
      item.chip.dataset.state = item.attachment ? "ready" : "uploading";
      chips.appendChild(item.chip);
    });
    chips.hidden = this.items.length === 0;
    this.onChange();
  };

  Composer.prototype.showError = function (text) {
    this.els.error.textContent = text;
    this.els.error.hidden = !text;
  };

  /* The ids to send, or null while an upload is still going. */
  Composer.prototype.ids = function () {
    if (this.items.some(function (item) { return !item.attachment; })) return null;
    return this.items.map(function (item) { return item.attachment.id; });
  };

  Composer.prototype.uploading = function () { return this.ids() === null; };

  /* The message was stored with them: the chips go. */
  Composer.prototype.clear = function () {
    this.items = [];
    this.showError("");
    this.redraw();
  };

  /* A bubble's attachments (`message.attachments`); an absent field leaves what is shown. */
  function show(record, attachments) {
    if (!attachments) return;
    if (!record.files) {
      record.files = make("div", "attachments");
      record.content.insertAdjacentElement("afterend", record.files);
    }
    record.files.textContent = "";
    record.files.hidden = attachments.length === 0;
    attachments.forEach(function (a) {
      var link = make("a", "attachment");
      link.href = a.url;
      link.dataset.attachmentId = a.id;
      if (a.content_type.indexOf("image/") === 0) {
        link.className = "attachment attachment-image";
        link.target = "_blank";
        link.rel = "noopener";
        var img = make("img");
        img.src = a.url;
        img.alt = a.name;
        img.loading = "lazy";
        link.appendChild(img);
      } else {
        link.className = "attachment attachment-file";
        link.setAttribute("download", a.name);
        link.appendChild(make("span", "attachment-name", a.name));
      }
      link.appendChild(make("span", "attachment-size", humanSize(a.size)));
      record.files.appendChild(link);
    });
  }

  window.NousAttachments = { Composer: Composer, show: show, humanSize: humanSize };
})();
