// The edit page, with JavaScript: re-render the preview a short pause after typing stops, and keep the
// subject's character count current. Without it the page works the same through its Save button.
(function () {
  "use strict";
  var form = document.getElementById("edit-form");
  var frame = document.getElementById("preview-frame");
  if (!form || !frame || !window.fetch || !window.URLSearchParams) { return; }
  var subject = document.getElementById("subject");
  var count = document.getElementById("subject-count");
  var checks = document.getElementById("checks");
  var timer = null;
  var PAUSE_MS = 700;

  function showChecks(data) {
    while (checks.firstChild) { checks.removeChild(checks.firstChild); }
    var note = document.createElement("p");
    note.className = "muted";
    note.textContent = "Preview of your unsaved changes. Save to keep them.";
    checks.appendChild(note);
    var list = document.createElement("ul");
    list.className = "findings";
    var items = [];
    if (data.ok) {
      data.findings.forEach(function (f) { items.push([f.level, (f.level === "error" ? "Problem: " : "Note: ") + f.message]); });
    } else {
      Object.keys(data.problems).forEach(function (k) { items.push(["error", "Problem: " + data.problems[k]]); });
    }
    if (!items.length) { items.push(["ok", "No problems found."]); }
    items.forEach(function (item) {
      var li = document.createElement("li");
      li.className = item[0];
      li.textContent = item[1];  // text only: nothing from the server is parsed as markup
      list.appendChild(li);
    });
    checks.appendChild(list);
  }

  function refresh() {
    var body = new URLSearchParams(new FormData(form));
    body.delete("op");
    fetch(form.dataset.draft, { method: "POST", body: body, credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (data) {
        if (!data) { return; }
        showChecks(data);
        if (data.ok) {
          var dark = frame.dataset.scheme === "dark" ? "&scheme=dark" : "";
          frame.src = form.dataset.preview + "?draft=1" + dark + "&t=" + Date.now();
        }
      })
      .catch(function () { /* the saved preview stays; Save still works */ });
  }

  form.addEventListener("input", function () {
    if (subject && count) { count.textContent = String(subject.value.length); }
    if (timer) { clearTimeout(timer); }
    timer = setTimeout(refresh, PAUSE_MS);
  });
})();
