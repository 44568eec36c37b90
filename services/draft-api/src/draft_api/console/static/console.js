// OrderFlow console: live status (server-sent events), keyboard, small helpers.
// Plain JavaScript, no build step and no third-party code.
(function () {
  "use strict";
  var csrfMeta = document.querySelector('meta[name="csrf"]');
  var csrf = csrfMeta ? csrfMeta.content : "";
  var page = document.body.dataset.page;

  function post(url, fields) {
    var form = document.createElement("form");
    form.method = "post";
    form.action = url;
    fields.csrf = csrf;
    Object.keys(fields).forEach(function (name) {
      var input = document.createElement("input");
      input.type = "hidden";
      input.name = name;
      input.value = fields[name];
      form.appendChild(input);
    });
    document.body.appendChild(form);
    submitting = true;
    form.submit();
  }

  // --- live feed -------------------------------------------------------------------
  var liveState = document.getElementById("live-state");
  var lastStatus = {};
  function say(text, kind) {
    if (!liveState) return;
    liveState.textContent = text;
    liveState.className = "live " + kind;
  }
  function setBadges(id, status) {
    document.querySelectorAll('[data-status-of="' + id + '"]').forEach(function (el) {
      el.textContent = status;
      el.className = el.className.replace(/\bs-[A-Z_]+\b/, "s-" + status);
    });
    var row = document.querySelector('tr[data-id="' + id + '"]');
    if (row) row.dataset.status = status;
  }
  function later(fn, ms) {
    var timer = null;
    return function () {
      if (timer) clearTimeout(timer);
      timer = setTimeout(function () { timer = null; fn(); }, ms);
    };
  }
  function refreshCounts() {
    fetch("/ui/drafts/counts", { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (counts) {
        if (!counts) return;
        Object.keys(counts).forEach(function (status) {
          var el = document.querySelector('[data-count="' + status + '"]');
          if (el) el.textContent = counts[status];
        });
      })
      .catch(function () {});
  }
  // after (re)connecting: what changed while the page had no feed
  function refreshRows() {
    fetch(location.href, { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (html === null) return;
        var holder = document.createElement("div");
        holder.innerHTML = html;
        holder.querySelectorAll("[data-status-of]").forEach(function (el) {
          var id = el.getAttribute("data-status-of");
          if (!lastStatus[id]) setBadges(id, el.textContent.trim());
        });
      })
      .catch(function () {});
  }
  var countsSoon = later(refreshCounts, 300);
  var countsLater = later(refreshCounts, 1500);

  var liveBox = document.getElementById("draft-live");
  var submitting = false;
  document.addEventListener("submit", function () { submitting = true; });
  var tries = 0;
  function refreshDraft() {
    if (!liveBox) return;
    var id = liveBox.dataset.draft;
    fetch("/ui/drafts/" + id + "?part=live", { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (html === null) return;
        var holder = document.createElement("div");
        holder.innerHTML = html;
        var badge = holder.querySelector("#draft-status");
        var want = lastStatus[id];
        if (badge && want && badge.textContent.trim() !== want && tries < 6) {
          tries += 1;  // the service has not applied the event yet: ask again shortly
          setTimeout(refreshDraft, 700);
          return;
        }
        tries = 0;
        // the same version of the draft: nothing to show (and no button pulled away
        // from under a click); a form on its way: the next page shows the news anyway
        var fresh = holder.querySelector("[data-version]");
        var shown = liveBox.querySelector("[data-version]");
        if (submitting || (fresh && shown &&
            fresh.getAttribute("data-version") === shown.getAttribute("data-version"))) {
          return;
        }
        var focused = document.activeElement && document.activeElement.dataset
          ? document.activeElement.dataset.action : null;
        liveBox.innerHTML = html;
        if (focused) {
          var again = liveBox.querySelector('[data-action="' + focused + '"]');
          if (again) again.focus();
        }
      })
      .catch(function () {});
  }
  var draftSoon = later(refreshDraft, 300);

  // Kafka orders each topic, not the topics against each other: an export's outcome can
  // arrive before the push request that started it, which must not take the badge back.
  var settled = {};
  function onDraft(update) {
    var exportId = update.erp_export_id;
    if (exportId) {
      if (update.status === "PUSHING" && settled[exportId]) return;
      if (update.status === "PUSHED" || update.status === "ERROR") settled[exportId] = true;
    }
    lastStatus[update.draft_id] = update.status;
    setBadges(update.draft_id, update.status);
    if (liveBox && liveBox.dataset.draft === update.draft_id) {
      var reason = document.getElementById("live-reason");
      if (reason) {
        reason.textContent = update.reason
          ? (update.status === "ERROR" ? "Push failed: " : "") + update.reason : "";
      }
      tries = 0;
      draftSoon();
    }
    if (page === "drafts") { countsSoon(); countsLater(); }
  }

  // The browser reconnects a dropped stream by itself; a refused one (the gateway's 503
  // while draft-api restarts, a 401 after the session ended) is opened again from here.
  var retryMs = 2000;
  function connect() {
    var source = new EventSource("/ui/events");
    source.addEventListener("feed", function (e) {
      var data = JSON.parse(e.data);
      retryMs = 2000;
      if (data.live) {
        say("Live", "on");
        if (page === "drafts") { refreshCounts(); refreshRows(); }
        if (liveBox) refreshDraft();
      } else {
        say("Live updates waiting for the event stream…", "lost");
      }
    });
    source.addEventListener("draft", function (e) { onDraft(JSON.parse(e.data)); });
    source.onerror = function () {
      say("Live updates lost: reconnecting…", "lost");
      if (source.readyState === EventSource.CLOSED) {
        setTimeout(connect, retryMs);
        retryMs = Math.min(retryMs * 2, 8000);
      }
    };
  }
  if (document.body.dataset.live === "on" && window.EventSource) connect();

  // --- keyboard --------------------------------------------------------------------
  var dialog = document.getElementById("keys");
  var keysButton = document.getElementById("keys-button");
  function showKeys() { if (dialog && !dialog.open) dialog.showModal(); }
  if (keysButton) keysButton.addEventListener("click", showKeys);

  var current = -1;
  function rows() { return Array.prototype.slice.call(document.querySelectorAll("table.drafts tbody tr")); }
  function move(by) {
    var all = rows();
    if (!all.length) return;
    current = Math.max(0, Math.min(all.length - 1, current + by));
    all.forEach(function (r, i) { r.classList.toggle("current", i === current); });
    var link = all[current].querySelector(".row-link");
    if (link) link.focus();
  }
  function currentRow() {
    var all = rows();
    var focused = document.activeElement && document.activeElement.closest
      ? document.activeElement.closest("table.drafts tbody tr") : null;
    return focused || all[current] || null;
  }
  function rowAction(kind) {
    var row = currentRow();
    if (!row) return;
    var id = row.dataset.id, status = row.dataset.status;
    var key = row.querySelector('input[name="key_' + id + '"]');
    var here = location.pathname + location.search;
    if (kind === "approve" && status === "READY") {
      post("/ui/drafts/" + id + "/approve", { next: here });
    } else if (kind === "push" && (status === "APPROVED" || status === "ERROR")) {
      post("/ui/drafts/" + id + "/" + (status === "ERROR" ? "retry" : "push"),
        { next: here, idempotency_key: key ? key.value : "" });
    }
  }
  function click(selector) {
    var el = document.querySelector(selector);
    if (el) el.click();
  }

  document.addEventListener("keydown", function (e) {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    var t = e.target;
    if (t && (t.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName))) return;
    if (dialog && dialog.open) return;
    switch (e.key) {
      case "?": e.preventDefault(); showKeys(); break;
      case "/": {
        var q = document.getElementById("q");
        if (q) { e.preventDefault(); q.focus(); q.select(); }
        break;
      }
      case "j": if (page === "drafts") { e.preventDefault(); move(1); } break;
      case "k": if (page === "drafts") { e.preventDefault(); move(-1); } break;
      case "x": {
        var row = page === "drafts" ? currentRow() : null;
        var box = row ? row.querySelector('input[type="checkbox"]') : null;
        if (box) { e.preventDefault(); box.checked = !box.checked; }
        break;
      }
      case "a":
        if (page === "drafts") rowAction("approve");
        else if (page === "draft") click('[data-action="approve"]');
        break;
      case "p":
        if (page === "drafts") rowAction("push");
        else if (page === "draft") click('[data-action="push"], [data-action="retry"]');
        break;
      default: break;
    }
  });

  // --- host-key fingerprint ----------------------------------------------------------
  var fetchButton = document.getElementById("fetch-fingerprint");
  if (fetchButton) {
    fetchButton.addEventListener("click", function () {
      var note = document.getElementById("fingerprint-note");
      var host = document.getElementById("sftp_host").value;
      var port = document.getElementById("sftp_port").value;
      note.textContent = "Asking " + host + ":" + port + " for its host key…";
      var body = new URLSearchParams({ csrf: csrf, host: host, port: port });
      fetch("/ui/connections/host-key", {
        method: "POST", credentials: "same-origin", body: body,
        headers: { "Content-Type": "application/x-www-form-urlencoded" }
      })
        .then(function (r) { return r.json(); })
        .then(function (data) {
          if (data.fingerprint) {
            document.getElementById("sftp_host_key_fingerprint").value = data.fingerprint;
            note.textContent = "The server at " + data.host + ":" + data.port + " presented " +
              data.fingerprint + ". Compare it with the fingerprint your ERP provider gave you before you save.";
          } else {
            note.textContent = data.error || "No fingerprint could be fetched.";
          }
        })
        .catch(function () { note.textContent = "The console could not be reached; try again."; });
    });
  }
})();
