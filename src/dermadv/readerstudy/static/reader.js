// dermadv reader study: one image at a time. An answer is sent with a submission id made once per
// page; the next image is shown only after the server confirms the answer is committed. Network
// failures are retried with the same submission id, so a re-sent answer is stored once.
(function () {
  "use strict";
  var cfg = document.body.dataset;
  if (!cfg.submit) { return; }
  var img = document.getElementById("study-image");
  var viewer = document.getElementById("viewer");
  var nextBtn = document.getElementById("next");
  var statusEl = document.getElementById("status");
  var mode = cfg.confidenceMode;
  var answer = cfg.existingAnswer || null;
  var confidence = cfg.existingConfidence ? parseInt(cfg.existingConfidence, 10) : null;
  var shownAt = null;
  var sending = false;
  var submissionId = newId();

  function newId() {
    var a = new Uint8Array(16);
    window.crypto.getRandomValues(a);
    return Array.prototype.map.call(a, function (b) { return ("0" + b.toString(16)).slice(-2); }).join("");
  }
  function markShown() { if (shownAt === null) { shownAt = performance.now(); } }
  if (img.complete && img.naturalWidth > 0) { markShown(); } else { img.addEventListener("load", markShown); }

  function ready() { return answer !== null && (mode !== "required" || confidence !== null); }
  function render() {
    document.querySelectorAll(".choice").forEach(function (b) {
      b.setAttribute("aria-pressed", String(b.dataset.value === answer));
    });
    document.querySelectorAll(".rate").forEach(function (b) {
      b.setAttribute("aria-pressed", String(parseInt(b.dataset.value, 10) === confidence));
    });
    nextBtn.disabled = !ready() || sending;
  }
  function setStatus(text, isError) {
    statusEl.textContent = text;
    statusEl.className = isError ? "error" : "";
  }
  function choose(value) { if (!sending) { answer = value; render(); } }
  function rate(n) { if (!sending && mode !== "off") { confidence = n; render(); } }
  function sleep(ms) { return new Promise(function (r) { setTimeout(r, ms); }); }

  async function submit() {
    if (!ready() || sending) { return; }
    sending = true;
    render();
    setStatus("Saving\u2026", false);
    var payload = {
      image: cfg.image, answer: answer, confidence: mode === "off" ? null : confidence,
      submission_id: submissionId, client_ms: shownAt === null ? null : Math.round(performance.now() - shownAt)
    };
    for (var attempt = 0; ; attempt++) {
      try {
        var r = await fetch(cfg.submit, {
          method: "POST", headers: {"Content-Type": "application/json", "Accept": "application/json"},
          body: JSON.stringify(payload), cache: "no-store", credentials: "same-origin"
        });
        if (r.ok) {
          var ok = await r.json();
          setStatus("Saved.", false);
          window.location.assign(ok.next);
          return;
        }
        if (r.status >= 500) { throw new Error("server error " + r.status); }
        var err = await r.json().catch(function () { return {}; });
        var detail = typeof err.detail === "string" ? err.detail : "the answer was refused";
        setStatus("Not saved: " + detail + " (" + r.status + ")", true);
        sending = false;
        submissionId = newId();
        render();
        return;
      } catch (e) {
        setStatus("Not saved yet \u2014 connection problem, retrying\u2026 (your answer is kept)", true);
        await sleep(Math.min(8000, 400 * Math.pow(2, attempt)));
      }
    }
  }

  // ----- zoom and pan -----------------------------------------------------------------------
  var scale = 1, tx = 0, ty = 0, drag = null;
  function applyZoom() { img.style.transform = "translate(" + tx + "px," + ty + "px) scale(" + scale + ")"; }
  function zoomAt(factor, cx, cy) {
    var r = img.getBoundingClientRect();
    var ns = Math.min(8, Math.max(1, scale * factor));
    if (cx === undefined) { cx = r.left + r.width / 2; cy = r.top + r.height / 2; }
    var px = (cx - r.left) / scale, py = (cy - r.top) / scale;
    tx += (cx - r.left) - px * ns - ((cx - r.left) - px * scale);
    ty += (cy - r.top) - py * ns - ((cy - r.top) - py * scale);
    scale = ns;
    if (scale === 1) { tx = 0; ty = 0; }
    applyZoom();
  }
  function resetZoom() { scale = 1; tx = 0; ty = 0; applyZoom(); }
  viewer.addEventListener("wheel", function (e) {
    e.preventDefault();
    zoomAt(e.deltaY < 0 ? 1.25 : 0.8, e.clientX, e.clientY);
  }, {passive: false});
  viewer.addEventListener("mousedown", function (e) { drag = {x: e.clientX - tx, y: e.clientY - ty}; });
  window.addEventListener("mouseup", function () { drag = null; });
  viewer.addEventListener("mousemove", function (e) {
    if (drag && scale > 1) { tx = e.clientX - drag.x; ty = e.clientY - drag.y; applyZoom(); }
  });
  viewer.addEventListener("dblclick", function (e) { if (scale > 1) { resetZoom(); } else { zoomAt(2, e.clientX, e.clientY); } });
  document.getElementById("zoom-in").addEventListener("click", function () { zoomAt(1.25); });
  document.getElementById("zoom-out").addEventListener("click", function () { zoomAt(0.8); });
  document.getElementById("zoom-reset").addEventListener("click", resetZoom);

  // ----- mouse and keyboard -----------------------------------------------------------------
  document.querySelectorAll(".choice").forEach(function (b) {
    b.addEventListener("click", function () { choose(b.dataset.value); });
  });
  document.querySelectorAll(".rate").forEach(function (b) {
    b.addEventListener("click", function () { rate(parseInt(b.dataset.value, 10)); });
  });
  nextBtn.addEventListener("click", submit);
  var keys = {};
  document.querySelectorAll(".choice").forEach(function (b) { keys[b.dataset.key.toLowerCase()] = b.dataset.value; });
  document.addEventListener("keydown", function (e) {
    if (e.ctrlKey || e.metaKey || e.altKey) { return; }
    var k = e.key.toLowerCase();
    if (keys[k]) { choose(keys[k]); e.preventDefault(); }
    else if (/^[1-5]$/.test(k)) { rate(parseInt(k, 10)); e.preventDefault(); }
    else if (k === "enter" || k === "arrowright") { submit(); e.preventDefault(); }
    else if (k === "arrowleft" && cfg.prevUrl) { window.location.assign(cfg.prevUrl); e.preventDefault(); }
    else if (k === "+" || k === "=") { zoomAt(1.25); e.preventDefault(); }
    else if (k === "-") { zoomAt(0.8); e.preventDefault(); }
    else if (k === "0") { resetZoom(); e.preventDefault(); }
  });
  render();
})();
