// Copy buttons: <button class="copy" data-copy="ID"> copies the text of
// the element with that id. The only script of the UI; pages work without it.
document.addEventListener("click", async (ev) => {
  const btn = ev.target.closest("button.copy");
  if (!btn) return;
  const el = document.getElementById(btn.dataset.copy);
  if (!el) return;
  const text = "value" in el ? el.value : el.textContent;
  let ok = false;
  try {
    await navigator.clipboard.writeText(text.trim());
    ok = true;
  } catch (e) {
    // No clipboard API (a page the browser does not count as secure):
    // select the text so that Ctrl+C / Cmd+C copies it.
    if (el.select) { el.focus(); el.select(); }
    else { const r = document.createRange(); r.selectNodeContents(el); const s = getSelection(); s.removeAllRanges(); s.addRange(r); }
    ok = document.execCommand && document.execCommand("copy");
  }
  const label = btn.textContent;
  btn.textContent = ok ? "Copied" : "Press Ctrl+C";
  btn.classList.add("copied");
  setTimeout(() => { btn.textContent = label; btn.classList.remove("copied"); }, 1800);
});
