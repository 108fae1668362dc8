import type { Slot } from "../../gen/holdfast/v1/availability_pb.js";
import type { Problem } from "./api.js";
import { h } from "./dom.js";
import { msOf, wallTime } from "./time.js";

/** The one modal dialog: Escape or Close dismisses it, and focus returns where it was. */
let dialog: HTMLDialogElement | undefined;
let returnFocus: HTMLElement | null = null;

export function openDialog(title: string, ...content: (Node | null)[]): void {
  closeDialog();
  returnFocus = document.activeElement as HTMLElement | null;
  const closeButton = h(
    "button",
    { class: "close", "aria-label": "Close", onclick: closeDialog },
    "×",
  );
  dialog = h(
    "dialog",
    { "aria-labelledby": "dialog-title" },
    h("header", {}, h("h2", { id: "dialog-title" }, title), closeButton),
    ...content,
  );
  dialog.addEventListener("close", () => {
    dialog?.remove();
    dialog = undefined;
    returnFocus?.focus();
  });
  document.body.append(dialog);
  dialog.showModal();
}

export function closeDialog(): void {
  dialog?.close();
}

/**
 * An error as the API gave it: the stable reason first, the message, the
 * fields at fault, and the free times it offered instead (each a button
 * that tries again with that slot, when `retry` is given).
 */
export function problemView(p: Problem, zone: string, retry?: (slot: Slot) => void): HTMLElement {
  return h(
    "div",
    { class: "problem", role: "alert" },
    h("strong", { class: "reason" }, p.reason || p.code),
    " ",
    h("span", {}, p.message),
    p.fields.length
      ? h(
          "ul",
          {},
          p.fields.map((f) => h("li", {}, f)),
        )
      : null,
    p.alternatives.length
      ? h(
          "div",
          { class: "alternatives" },
          h("span", {}, "Free instead: "),
          p.alternatives.map((s) => {
            const label = wallTime(msOf(s.startTime), s.timeZone || zone);
            return retry
              ? h("button", { class: "alternative", onclick: () => retry(s) }, label)
              : h("span", { class: "alternative" }, label);
          }),
        )
      : null,
  );
}
