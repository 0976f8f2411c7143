// Coupons tab: row selection, "select all N matching", bulk confirmation dialog.

// The row actions' dialog itself (loading, a refusal kept in it, focus) is action_dialog.js.

(function () {
  const form = document.getElementById("bulk-form");
  if (!form) return;
  const pageBox = document.getElementById("select-page");
  const rowBoxes = () => Array.from(form.querySelectorAll("input.row-check"));
  const buttons = Array.from(form.querySelectorAll(".bulk-button"));
  const banner = document.getElementById("select-all-banner");
  const selectAll = document.getElementById("select-all");
  const matching = document.getElementById("matching-count");
  const total = Number(matching.dataset.count);
  const estimate = matching.dataset.estimate === "1";

  function selectedCount() {
    if (selectAll.value === "1") return total;
    return rowBoxes().filter((box) => box.checked).length;
  }

  function refresh() {
    const count = selectedCount();
    buttons.forEach((button) => (button.disabled = count === 0));
    const all = rowBoxes().length > 0 && rowBoxes().every((box) => box.checked);
    if (pageBox) pageBox.checked = all;
    const more = total > rowBoxes().length;
    banner.classList.toggle("d-none", !(all && more));
    if (selectAll.value === "1") {
      document.getElementById("select-all-text").textContent =
        interpolate(ngettext("All %s matching coupon is selected.", "All %s matching coupons are selected.", total),
                    [`${estimate ? "about " : ""}${total.toLocaleString("en")}`]);
      document.getElementById("select-all-matching").classList.add("d-none");
    }
  }

  if (pageBox) {
    pageBox.addEventListener("change", () => {
      rowBoxes().forEach((box) => (box.checked = pageBox.checked));
      selectAll.value = "0";
      refresh();
    });
  }
  form.addEventListener("change", (event) => {
    if (event.target.classList.contains("row-check")) {
      selectAll.value = "0";
      refresh();
    }
  });
  document.getElementById("select-all-matching").addEventListener("click", () => {
    selectAll.value = "1";
    refresh();
  });

  const dialog = document.getElementById("dialog");
  const content = document.getElementById("dialog-content");
  buttons.forEach((button) =>
    button.addEventListener("click", () => {
      const count = selectedCount();
      content.replaceChildren(document.getElementById("bulk-confirm-template").content.cloneNode(true));
      // Django's ngettext (the JavaScript catalog, /jsi18n/), as the server's sentences.
      const what = selectAll.value === "1"
        ? interpolate(ngettext("all %s matching coupon", "all %s matching coupons", count),
                      [`${estimate ? "about " : ""}${count.toLocaleString("en")}`])
        : interpolate(ngettext("%s selected coupon", "%s selected coupons", count), [count]);
      content.querySelector("#dialog-title").textContent = `${button.dataset.label.replace(" selected", "")} ${what}?`;
      const confirm = content.querySelector("#bulk-confirm");
      confirm.textContent = button.dataset.label.replace(" selected", "");
      confirm.addEventListener("click", () => {
        document.getElementById("bulk-action").value = button.dataset.action;
        form.submit();
      });
      // How many will be changed and how many skipped, counted by the server first.
      confirm.disabled = true;
      const preview = content.querySelector("#bulk-preview");
      const params = new URLSearchParams(new FormData(form));
      ["csrfmiddlewaretoken", "submission"].forEach((name) => params.delete(name));
      params.set("action", button.dataset.action);
      const counted = () => {
        const result = preview.querySelector("[data-applied]");
        if (!result) {
          preview.textContent = "The coupons could not be counted; those whose status does not allow it are skipped.";
        }
        confirm.disabled = result !== null && result.dataset.applied === "0";
        if (result && result.dataset.danger === "1") confirm.classList.replace("btn-primary", "btn-danger");
      };
      htmx.ajax("GET", `${form.dataset.previewUrl}?${params}`, { target: preview, swap: "innerHTML" })
        .then(counted, counted);
      bootstrap.Modal.getOrCreateInstance(dialog).show();
    })
  );
  refresh();
})();
