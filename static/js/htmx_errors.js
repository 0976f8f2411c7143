// A refused (403), missing (404) or failed htmx request says so where its answer was
// awaited: in a dialog, instead of "Loading…" for ever, or at the top of the page. The
// words are the server's own error page's (templates/components/error_page.html).
(function () {
  function explain(xhr) {
    if (!xhr || !xhr.status) {
      return { title: "No connection", message: "The server could not be reached. Check the connection and try again." };
    }
    const page = new DOMParser().parseFromString(xhr.responseText || "", "text/html");
    const title = page.querySelector("[data-error-title]");
    const message = page.querySelector("[data-error-message]");
    return {
      title: title ? title.textContent.trim() : "Something went wrong",
      message: message ? message.textContent.trim() : `The server answered with an error (${xhr.status}). Try again in a moment.`,
    };
  }

  function show(event) {
    const { title, message } = explain(event.detail.xhr);
    const target = event.detail.target;
    const dialog = target && target.closest && target.closest(".modal-content");
    const template = document.getElementById("dialog-error-template");
    if (dialog && template) {
      const content = template.content.cloneNode(true);
      content.querySelector("[data-error-title]").textContent = title;
      content.querySelector("[data-error-message]").textContent = message;
      dialog.replaceChildren(content);
      const close = dialog.querySelector(".modal-footer button");
      close.focus();
      // An answer faster than the opening animation: Bootstrap focuses the dialog once shown.
      const modal = dialog.closest(".modal");
      if (modal) {
        const again = () => close.focus();
        modal.addEventListener("shown.bs.modal", again, { once: true });
        modal.addEventListener("hidden.bs.modal", () => modal.removeEventListener("shown.bs.modal", again), { once: true });
      }
      return;
    }
    const region = document.getElementById("htmx-error");
    if (!region) return;
    region.textContent = `${title}: ${message}`;
    region.classList.remove("d-none");
  }

  // 422 is not an error but a form refused with its reasons (what was typed kept, the
  // reason next to it: a coupon action's dialog, views.CouponActionView.refused): htmx
  // swaps it in like any answer, on every page.
  document.addEventListener("htmx:beforeSwap", (event) => {
    if (event.detail.xhr.status === 422 && !event.detail.stale) {
      event.detail.shouldSwap = true;
      event.detail.isError = false;
    }
  });
  document.addEventListener("htmx:responseError", show);
  document.addEventListener("htmx:sendError", show);
})();
