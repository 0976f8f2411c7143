// A button with data-copy="<selector>" copies that field's value and says so. Where the
// clipboard API is not available (plain http on a host other than localhost), the
// field's text is selected instead, ready for Ctrl+C.
document.addEventListener("click", async (event) => {
  const button = event.target.closest("[data-copy]");
  if (!button) return;
  const field = document.querySelector(button.dataset.copy);
  const label = button.querySelector("[data-copy-label]") || button;
  const original = label.dataset.original || (label.dataset.original = label.textContent);
  try {
    await navigator.clipboard.writeText(field.value);
    label.textContent = "Copied";
  } catch (error) {
    field.focus();
    field.select();
    label.textContent = "Press Ctrl+C";
  }
  setTimeout(() => { label.textContent = original; }, 2000);
});

// A field with data-select-on-click selects all its text when clicked.
document.addEventListener("click", (event) => {
  const field = event.target.closest("[data-select-on-click]");
  if (field) field.select();
});
