// dermadv reader study: one image at a time. An answer is sent with a submission id made once per
// page; the next image is shown only after the server confirms the answer is committed. Network
// failures are retried with the same submission id, so a re-sent answer is stored once.
// The image is fitted to the viewer (enlarged smoothly up to data-max-upscale times); zoom and pan
// work on top of the fitted size, and "Fit" (or 0) returns to it.
(function () {
  "use strict";
  var cfg = document.body.dataset;
  if (!cfg.submit) { return; }
  var img = document.getElementById("study-image");
  var viewer = document.getElementById("viewer");
  var nextBtn = document.getElementById("next");
  var statusEl = document.getElementById("status");
  var zoomLabel = document.getElementById("zoom-level");
  var mode = cfg.confidenceMode;
  var maxUpscale = parseFloat(cfg.maxUpscale) || 4;
  var answer = cfg.existingAnswer || null;
  var confidence = cfg.existingConfidence ? parseInt(cfg.existingConfidence, 10) : null;
  var shownAt = null;
  var sending = false;
  var submissionId = newId();
  var choiceLabels = Array.prototype.map.call(document.querySelectorAll(".choice"), function (b) {
    return b.firstChild.textContent.trim();
  });

  function newId() {
    var a = new Uint8Array(16);
    window.crypto.getRandomValues(a);
    return Array.prototype.map.call(a, function (b) { return ("0" + b.toString(16)).slice(-2); }).join("");
  }
  function markShown() { if (shownAt === null) { shownAt = performance.now(); } }

  function missing() {
    if (answer === null) { return "Choose " + choiceLabels.join(" or ") + " first."; }
    if (mode === "required" && confidence === null) { return "Choose how confident you are (1\u20135) first."; }
    return null;
  }
  function render() {
    document.querySelectorAll(".choice").forEach(function (b) {
      b.setAttribute("aria-pressed", String(b.dataset.value === answer));
    });
    document.querySelectorAll(".rate").forEach(function (b) {
      b.setAttribute("aria-pressed", String(parseInt(b.dataset.value, 10) === confidence));
    });
    nextBtn.setAttribute("aria-disabled", String(missing() !== null || sending));
    if (!sending && statusEl.dataset.kind === "missing" && missing() === null) { setStatus("", ""); }
  }
  // kind: "" (info), "missing", "saving", "retrying", "refused"; a link gives the reader a way on
  function setStatus(text, kind, link) {
    statusEl.textContent = text;
    statusEl.dataset.kind = kind;
    statusEl.className = kind === "missing" || kind === "retrying" || kind === "refused" ? "error" : "";
    if (link) {
      var a = document.createElement("a");
      a.href = link.href;
      a.id = "status-link";
      a.textContent = link.text;
      statusEl.appendChild(a);
    }
  }
  function choose(value) { if (!sending) { answer = value; render(); } }
  function rate(n) { if (!sending && mode !== "off") { confidence = n; render(); } }
  function sleep(ms) { return new Promise(function (r) { setTimeout(r, ms); }); }

  async function submit() {
    if (sending) { return; }
    var why = missing();
    if (why !== null) { setStatus(why, "missing"); return; }
    sending = true;
    render();
    setStatus("Saving\u2026", "saving");
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
          setStatus("Saved.", "");
          window.location.assign(ok.next);
          return;
        }
        if (r.status >= 500) { throw new Error("server error " + r.status); }
        var err = await r.json().catch(function () { return {}; });
        var detail = typeof err.detail === "string" ? err.detail : "the answer was refused";
        var link = r.status === 409 || r.status === 404 ?
          {href: cfg.resume, text: "Continue with your next unanswered image \u2192"} : null;
        setStatus("Not saved: " + detail + " (" + r.status + ").", "refused", link);
        sending = false;
        submissionId = newId();
        render();
        return;
      } catch (e) {
        setStatus("Not saved yet \u2014 connection problem, retrying\u2026 (your answer is kept)", "retrying");
        await sleep(Math.min(8000, 400 * Math.pow(2, attempt)));
      }
    }
  }

  // ----- fit, zoom and pan ------------------------------------------------------------------
  var fitScale = 1, left = 0, top = 0, scale = 1, tx = 0, ty = 0, drag = null;
  function fit() {
    var nw = img.naturalWidth, nh = img.naturalHeight;
    if (!nw || !nh) { return; }
    var vw = viewer.clientWidth, vh = viewer.clientHeight;
    fitScale = Math.min(vw / nw, vh / nh, maxUpscale);
    var w = nw * fitScale, h = nh * fitScale;
    left = (vw - w) / 2;
    top = (vh - h) / 2;
    img.style.width = w + "px";
    img.style.height = h + "px";
    img.style.left = left + "px";
    img.style.top = top + "px";
    applyZoom();
  }
  function applyZoom() {
    img.style.transform = "translate(" + tx + "px," + ty + "px) scale(" + scale + ")";
    if (zoomLabel) { zoomLabel.textContent = "\u00d7" + (fitScale * scale).toFixed(1); }
  }
  function zoomAt(factor, cx, cy) {
    var r = viewer.getBoundingClientRect();
    var ns = Math.min(8, Math.max(1, scale * factor));
    // the point under the cursor (or the viewer's centre) stays where it is
    var lx = (cx === undefined ? r.width / 2 : cx - r.left) - left;
    var ly = (cy === undefined ? r.height / 2 : cy - r.top) - top;
    var ux = (lx - tx) / scale, uy = (ly - ty) / scale;
    tx = lx - ns * ux;
    ty = ly - ns * uy;
    scale = ns;
    if (scale === 1) { tx = 0; ty = 0; }
    applyZoom();
  }
  function resetZoom() { scale = 1; tx = 0; ty = 0; applyZoom(); }
  function onLoad() { markShown(); fit(); }
  if (img.complete && img.naturalWidth > 0) { onLoad(); } else { img.addEventListener("load", onLoad); }
  window.addEventListener("resize", fit);
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
