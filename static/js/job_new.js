// The new-job form: choosing another kind loads that kind's options (the same page with ?kind=).
const form = document.getElementById("job-form");
if (form) {
  form.querySelector("select[name=kind]").addEventListener("change", (event) => {
    window.location.assign(`${form.dataset.kindUrl}?kind=${encodeURIComponent(event.target.value)}`);
  });
}
