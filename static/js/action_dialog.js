// The action dialog of a page with coupon actions (templates/components/action_dialog_frame.html,
// on the Coupons tab and a coupon's page). Row actions load into it with htmx; a refusal
// comes back as 422 with the typed values and the reason, which htmx_errors.js lets htmx
// swap in like an answer (not an error).
// - Before each load the dialog shows "Loading…" with nothing to confirm, never the
//   previous coupon's dialog (or error); an answer to an older load is dropped.
// - Once loaded, the focus goes to the field a refusal concerns, else the first field
//   (or the confirm button); once closed, back to what opened it.
(function () {
  const dialog = document.getElementById("dialog");
  const content = document.getElementById("dialog-content");
  const loading = document.getElementById("dialog-loading-template");
  if (!dialog || !content || !loading) return;
  let loader = null; // the element whose request fills the dialog now
  let opener = null;

  const fromDialog = (elt) => elt && content.contains(elt);

  document.body.addEventListener("htmx:beforeRequest", (event) => {
    if (event.detail.target !== content || fromDialog(event.detail.elt)) return;
    loader = event.detail.elt;
    content.replaceChildren(loading.content.cloneNode(true));
  });

  document.body.addEventListener("htmx:beforeSwap", (event) => {
    if (event.detail.target !== content) return;
    const elt = event.detail.elt;
    if (elt !== loader && !fromDialog(elt)) {
      // An older dialog's answer (its load, or its form's refusal), after another was opened:
      // dropped (``stale`` tells htmx_errors.js not to swap a 422 of it back in).
      event.detail.shouldSwap = false;
      event.detail.isError = false;
      event.detail.stale = true;
    }
  });

  function focusFirst() {
    const first = content.querySelector(".is-invalid") ||
      content.querySelector("input:not([type=hidden]):not([disabled]), textarea, select, button[type=submit]:not([disabled])");
    if (first) first.focus();
  }

  document.body.addEventListener("htmx:afterSwap", (event) => {
    if (event.detail.target === content) focusFirst();
  });
  // An answer faster than the opening animation: Bootstrap focuses the dialog itself once shown.
  dialog.addEventListener("shown.bs.modal", focusFirst);

  dialog.addEventListener("show.bs.modal", (event) => {
    opener = event.relatedTarget || document.activeElement;
  });
  dialog.addEventListener("hidden.bs.modal", () => {
    if (!opener || !opener.isConnected) return;
    // A row menu's entry is hidden with its menu: its menu button takes the focus.
    const menu = opener.closest(".dropdown");
    const target = opener.checkVisibility() || !menu ? opener : menu.querySelector("[data-bs-toggle=dropdown]");
    if (target) target.focus();
    opener = null;
  });
})();
