// Keyboard shortcuts of the review page: digits pick a verdict, letters toggle issue tags,
// n (or Enter) saves and moves on, j skips, / edits the note, Esc leaves it.
"use strict";
document.addEventListener("keydown", function (event) {
  const form = document.getElementById("label-form");
  if (!form || event.ctrlKey || event.metaKey || event.altKey) return;
  const target = event.target;
  const typing = target && (target.tagName === "TEXTAREA" ||
    (target.tagName === "INPUT" && (target.type === "text" || target.type === "password")));
  if (typing) {
    if (event.key === "Escape") target.blur();
    return;
  }
  const key = event.key.toLowerCase();
  const byKey = form.querySelector('input[data-key="' + CSS.escape(key) + '"]');
  if (byKey) {
    if (byKey.type === "radio") byKey.checked = true;
    else byKey.checked = !byKey.checked;
    event.preventDefault();
    return;
  }
  if (key === "n" || key === "enter") {
    event.preventDefault();
    if (form.reportValidity()) form.requestSubmit();
  } else if (key === "j") {
    const skip = document.getElementById("skip");
    if (skip) { event.preventDefault(); window.location.assign(skip.href); }
  } else if (key === "/") {
    const note = document.getElementById("note");
    if (note) { event.preventDefault(); note.focus(); }
  }
});
