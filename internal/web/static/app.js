// Tern webmail: live mailbox counts and message list over Server-Sent
// Events, and an early size check of attachments. The pages work without
// this script; it only saves reloads and failed uploads.
(function () {
  "use strict";

  // Buttons and forms that destroy something ask first.
  document.addEventListener("submit", function (ev) {
    var msg = (ev.submitter && ev.submitter.dataset.confirm) || ev.target.dataset.confirm;
    if (msg && !window.confirm(msg)) {
      ev.preventDefault();
    }
  });

  // The server refuses a message over its size limit; say so before the
  // upload rather than after it.
  var compose = document.getElementById("compose");
  if (compose) {
    compose.addEventListener("change", function (ev) {
      if (ev.target.type === "file") {
        document.getElementById("size-error").hidden = true;
      }
    });
    compose.addEventListener("submit", function (ev) {
      var max = Number(compose.dataset.maxBytes);
      var total = 0;
      compose.querySelectorAll('input[type="file"]').forEach(function (input) {
        Array.prototype.forEach.call(input.files, function (f) {
          total += f.size;
        });
      });
      var err = document.getElementById("size-error");
      if (max > 0 && total * 4 / 3 > max) {
        ev.preventDefault();
        err.textContent = "The attachments are too large: a message may be at most " + compose.dataset.maxSize + ".";
        err.hidden = false;
      } else {
        err.hidden = true;
      }
    });
  }

  if (!window.EventSource || !document.body.dataset.csrf) {
    return;
  }
  var list = document.getElementById("list");
  var notice = document.getElementById("newmail");
  // known is each mailbox's "messages:unseen" as the page shows it, so
  // that even the first event, which may come after new mail, is compared
  // with what the page was rendered from.
  var known = {};
  document.querySelectorAll("[data-unseen]").forEach(function (el) {
    known[el.dataset.unseen] = el.dataset.state;
  });

  function updateCounts(boxes) {
    boxes.forEach(function (b) {
      var el = document.querySelector('[data-unseen="' + b.ID + '"]');
      if (!el) {
        return;
      }
      el.querySelector(".n").textContent = String(b.Unseen);
      el.hidden = b.Unseen === 0;
    });
  }

  // busy is true while the user works in the list: messages selected or
  // keyboard focus inside it. Swapping the list then would lose their
  // place, so only the notice is shown.
  function busy() {
    return list && (list.querySelector('input[name="uid"]:checked') !== null || list.contains(document.activeElement));
  }

  // refreshList fetches the page again and swaps in its message list, so
  // new mail shows without a reload. With messages selected it only
  // tells the user, to not undo their selection.
  function refreshList() {
    if (!list || list.dataset.live !== "1") {
      if (notice) {
        notice.hidden = false;
      }
      return;
    }
    if (busy()) {
      notice.hidden = false;
      return;
    }
    fetch(window.location.href, { credentials: "same-origin" })
      .then(function (r) {
        if (!r.ok) {
          throw new Error(r.status);
        }
        return r.text();
      })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.getElementById("list");
        if (fresh && !busy()) {
          list.replaceChildren.apply(list, Array.prototype.slice.call(fresh.childNodes).map(function (n) {
            return document.importNode(n, true);
          }));
        }
      })
      .catch(function () {
        if (notice) {
          notice.hidden = false;
        }
      });
  }

  var es = new EventSource("/events");
  es.addEventListener("counts", function (ev) {
    var boxes = JSON.parse(ev.data);
    updateCounts(boxes);
    var changed = false;
    var now = {};
    boxes.forEach(function (b) {
      now[b.ID] = b.Messages + ":" + b.Unseen;
      if (list && String(b.ID) === list.dataset.mailbox && known[b.ID] !== now[b.ID]) {
        changed = true;
      }
    });
    known = now;
    if (changed) {
      refreshList();
    }
  });
})();
