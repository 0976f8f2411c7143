// A page with coupon action buttons (a coupon's detail): the dialog loads with htmx;
// put the focus in it once it arrives.
(function () {
  const content = document.getElementById("dialog-content");
  if (!content) return;
  document.body.addEventListener("htmx:afterSwap", (event) => {
    if (event.detail.target === content) {
      const first = content.querySelector("input:not([type=hidden]), button[type=submit]");
      if (first) first.focus();
    }
  });
})();
