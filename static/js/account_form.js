// Farm account form: show only the storage settings of the chosen kind (the others are not saved).
const kind = document.getElementById("id_kind");

function showChosen() {
  for (const fieldset of document.querySelectorAll("fieldset.storage")) {
    fieldset.hidden = fieldset.dataset.kind !== kind.value;
  }
}

if (kind) {
  kind.addEventListener("change", showChosen);
  showChosen();
}
