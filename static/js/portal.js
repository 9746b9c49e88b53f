// Small progressive enhancements: copy buttons and add/remove rows. The portal works without it.
document.addEventListener("click", (event) => {
  const copy = event.target.closest("[data-copy]");
  if (copy) {
    const source = document.getElementById(copy.dataset.copy);
    const text = source ? (source.value || source.textContent).trim() : "";
    navigator.clipboard?.writeText(text).then(() => {
      const label = copy.textContent;
      copy.textContent = "Copied";
      setTimeout(() => { copy.textContent = label; }, 1500);
    });
    return;
  }
  const add = event.target.closest("[data-add-row]");
  if (add) {
    const container = document.getElementById(add.dataset.addRow);
    const template = document.getElementById(add.dataset.template);
    if (container && template) container.appendChild(template.content.cloneNode(true));
    return;
  }
  const remove = event.target.closest("[data-remove-row]");
  if (remove) remove.closest(".header-row")?.remove();
});
document.addEventListener("submit", (event) => {
  const message = event.target.dataset.confirm;
  if (message && !window.confirm(message)) event.preventDefault();
});
// htmx: show a form's 400 answer (its errors, in place) instead of dropping it; and when a
// poll finds the session gone (the response is the sign-in page), reload instead of swapping
// the sign-in form into the page.
document.addEventListener("htmx:beforeSwap", (event) => {
  const xhr = event.detail.xhr;
  if (xhr.status === 400) {
    event.detail.shouldSwap = true;
    event.detail.isError = false;
  }
  if (xhr.responseURL && new URL(xhr.responseURL).pathname.startsWith("/login/")) {
    event.detail.shouldSwap = false;
    window.location.reload();
  }
});
// The destination form: show only the fields of the chosen provider (the server renders the
// same choice for the page it sends, and offers links for it without JavaScript).
function showProviderFields(select) {
  const form = select.closest("form");
  if (!form) return;
  for (const element of form.querySelectorAll("[data-provider-only]")) {
    element.hidden = element.dataset.providerOnly !== select.value;
  }
}
document.addEventListener("change", (event) => {
  if (event.target.matches("[data-provider-select]")) showProviderFields(event.target);
});
