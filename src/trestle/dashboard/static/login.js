// The login form sends back the device token an earlier login of the name gave this
// browser (pages.js keeps it): wrong passwords someone else sent for the name then do
// not hold this browser back.
"use strict";
const form = document.querySelector("form.account");
form.addEventListener("submit", () => {
  const name = form.elements.name.value.trim();
  form.elements.device.value = localStorage.getItem("trestle.device." + name) || "";
});
