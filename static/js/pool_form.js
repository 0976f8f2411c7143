// Shows only the pool form fields that apply to the chosen source and type. Hidden
// fields are disabled too, so their stale values are not submitted; the server
// refuses any that still arrive (for example with JavaScript turned off).
(function () {
  const form = document.getElementById("pool-form");
  if (!form) return;

  function current(name) {
    const checked = form.querySelector(`input[name="${name}"]:checked`);
    if (checked) return checked.value;
    const select = form.querySelector(`select[name="${name}"]`);
    if (select) return select.value;
    const locked = document.getElementById(`locked_${name}`);
    return locked ? locked.value : "";
  }

  function applies(wrapper, attribute, value) {
    const list = wrapper.getAttribute(attribute);
    return list === null || list.split(" ").includes(value);
  }

  function update() {
    const source = current("source");
    const type = current("coupon_type");
    form.querySelectorAll("[data-show-sources], [data-show-types]").forEach((wrapper) => {
      const visible =
        applies(wrapper, "data-show-sources", source) &&
        applies(wrapper, "data-show-types", type || "__none__");
      wrapper.hidden = !visible;
      wrapper.querySelectorAll("input, select, textarea").forEach((input) => {
        if (input.dataset.lockedDisabled === undefined) {
          input.dataset.lockedDisabled = input.disabled ? "1" : "0";
        }
        input.disabled = !visible || input.dataset.lockedDisabled === "1";
      });
    });
  }

  form.addEventListener("change", (event) => {
    if (["source", "coupon_type"].includes(event.target.name)) update();
  });
  update();
})();
