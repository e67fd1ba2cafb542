// Live parts of a page: an element with data-stream holds a server-sent-events stream
// whose messages are that element's HTML, rendered again by the server. While the
// keyboard focus is inside the element, the swap waits, so nobody loses their place.
"use strict";
for (const box of document.querySelectorAll("[data-stream]")) {
  let pending = null;
  const swap = () => {
    if (pending === null || box.contains(document.activeElement)) return;
    const open = new Set(
      Array.from(box.querySelectorAll("details[open]"), (d) => d.dataset.key || "")
    );
    box.innerHTML = pending;
    pending = null;
    for (const d of box.querySelectorAll("details[data-key]")) {
      if (open.has(d.dataset.key)) d.open = true;
    }
    box.dispatchEvent(new CustomEvent("trestle:swapped"));
  };
  const source = new EventSource(box.dataset.stream);
  source.onmessage = (message) => {
    pending = message.data;
    swap();
  };
  box.addEventListener("focusout", () => setTimeout(swap, 0));
}
