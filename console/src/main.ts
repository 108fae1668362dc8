import type { DescMethod } from "@bufbuild/protobuf";
import { BookingService } from "../../gen/holdfast/v1/booking_pb.js";
import { CatalogService } from "../../gen/holdfast/v1/catalog_pb.js";
import { EventService } from "../../gen/holdfast/v1/event_pb.js";
import { KeyService } from "../../gen/holdfast/v1/key_pb.js";
import { WebhookService } from "../../gen/holdfast/v1/webhook_pb.js";
import { api, can, forgetKey, problemOf, rememberKey, session } from "./api.js";
import { calendarPage } from "./calendar.js";
import { h, replace } from "./dom.js";
import { eventsPage } from "./eventlog.js";
import { startLive, stopLive } from "./live.js";
import { catalogPage, keysPage, webhooksPage } from "./pages.js";
import { problemView } from "./ui.js";

/**
 * The console's shell: sign-in with a pasted API key, then the pages the
 * key's scopes allow (what they do not allow is not offered), by URL hash.
 */

type Page = {
  path: string;
  title: string;
  needs: DescMethod;
  open: (root: HTMLElement) => () => void;
};

const PAGES: Page[] = [
  {
    path: "calendar",
    title: "Calendar",
    needs: BookingService.method.listBookings,
    open: calendarPage,
  },
  {
    path: "catalog",
    title: "Resources & services",
    needs: CatalogService.method.listServices,
    open: catalogPage,
  },
  { path: "events", title: "Events", needs: EventService.method.watchEvents, open: eventsPage },
  {
    path: "webhooks",
    title: "Webhooks",
    needs: WebhookService.method.listWebhooks,
    open: webhooksPage,
  },
  { path: "keys", title: "API keys", needs: KeyService.method.listApiKeys, open: keysPage },
];

const app = document.getElementById("app") as HTMLElement;
let closePage: (() => void) | undefined;

function signInView(message?: Node): void {
  const key = h("input", {
    type: "password",
    id: "api-key",
    autocomplete: "off",
    spellcheck: "false",
    required: true,
    placeholder: "hf_…",
  });
  replace(
    app,
    h(
      "main",
      { class: "signin" },
      h("h1", {}, "Holdfast"),
      h(
        "form",
        {
          class: "card",
          onsubmit: (e: Event) => {
            e.preventDefault();
            rememberKey(key.value.trim());
            void signIn();
          },
        },
        h("label", { for: "api-key" }, "API key"),
        key,
        h("p", { class: "hint" }, "Kept in this tab only, until you sign out or close it."),
        h("button", { type: "submit", class: "primary" }, "Sign in"),
        message ?? null,
      ),
    ),
  );
  key.focus();
}

async function signIn(): Promise<void> {
  if (!session.key) return signInView();
  try {
    const caller = await api.keys.getCaller({});
    session.scopes = caller.scopes;
    session.tenantName = caller.tenantName;
    session.keyId = caller.apiKeyId;
  } catch (err) {
    forgetKey();
    return signInView(problemView(problemOf(err), "UTC"));
  }
  startLive();
  shell();
}

function shell(): void {
  const pages = PAGES.filter((p) => can(p.needs));
  const main = h("main", { id: "page", tabindex: -1 });
  const nav = h(
    "nav",
    { "aria-label": "Pages" },
    pages.map((p) => h("a", { href: `#/${p.path}`, "data-page": p.path }, p.title)),
  );
  replace(
    app,
    h(
      "header",
      { class: "top" },
      h("h1", {}, "Holdfast"),
      nav,
      h(
        "div",
        { class: "who" },
        h("span", { title: session.scopes.join(", ") }, session.tenantName),
        h(
          "button",
          {
            onclick: () => {
              stopLive();
              closePage?.();
              forgetKey();
              location.hash = "";
              signInView();
            },
          },
          "Sign out",
        ),
      ),
    ),
    main,
  );
  const route = () => {
    const wanted = location.hash.replace(/^#\//, "");
    const page = pages.find((p) => p.path === wanted) ?? pages[0];
    closePage?.();
    closePage = undefined;
    for (const a of nav.querySelectorAll("a")) {
      if (a.dataset.page === page?.path) a.setAttribute("aria-current", "page");
      else a.removeAttribute("aria-current");
    }
    if (!page) {
      replace(main, h("p", {}, "This key's scopes allow none of the console's pages."));
      return;
    }
    document.title = `${page.title} · Holdfast`;
    closePage = page.open(main);
  };
  window.onhashchange = route;
  route();
}

void signIn();
