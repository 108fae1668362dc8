import { context, ROOT_CONTEXT } from "@opentelemetry/api";
import { log } from "../log.js";

/**
 * Runs a task when asked, never two at once and never more often than every
 * `minGapMs`: requests that arrive while it runs, or too soon after, are
 * served by one more run as soon as allowed. Background work that many
 * events wake (reading the outbox, notifying other instances, delivering
 * webhooks) uses this so a burst of writes costs a few runs, not one each.
 * A run serves every caller that asked, so it belongs to none of their
 * traces: it runs outside any span (and its queries make none).
 */
export class Pacer {
  private running: Promise<void> | undefined;
  private pending = false;
  private timer: NodeJS.Timeout | undefined;
  private lastStart = 0;
  private stopped = false;

  constructor(
    private readonly name: string,
    private readonly task: () => Promise<void>,
    private readonly minGapMs: number,
  ) {}

  poke(): void {
    if (this.stopped) return;
    if (this.running || this.timer) {
      this.pending = true;
      return;
    }
    const wait = this.lastStart + this.minGapMs - Date.now();
    if (wait > 0) {
      this.timer = setTimeout(() => {
        this.timer = undefined;
        this.start();
      }, wait);
      return;
    }
    this.start();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running;
  }

  private start(): void {
    this.pending = false;
    this.lastStart = Date.now();
    this.running = context
      .with(ROOT_CONTEXT, this.task)
      .catch((err: unknown) => log.warn(`${this.name} failed; will retry`, { err }))
      .finally(() => {
        this.running = undefined;
        if (this.pending) this.poke();
      });
  }
}
