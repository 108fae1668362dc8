import { LRUCache } from "lru-cache";

export type LoadingCacheOptions<V> = {
  /** Values kept at most; the least recently used goes first. */
  max: number;
  /** How long a value is kept, in ms; 0 for as long as it is not evicted or forgotten. */
  ttlMs: number;
  /**
   * Keys that loaded nothing, remembered apart (so they never evict a value)
   * for `missTtlMs`; 0 remembers none: every miss loads again.
   */
  missMax: number;
  missTtlMs: number;
  load: (key: string) => Promise<V | undefined>;
};

/** One load: its value, or undefined when the key has none. */
type Loaded<V> = { value: V | undefined };

/**
 * A bounded least-recently-used cache of values loaded from the database.
 * Concurrent misses of one key share one load (lru-cache's fetchMethod).
 * Loads run in a small cache of their own, which also remembers the keys
 * that loaded nothing; only values found are promoted to the main cache,
 * so a flood of unknown keys cannot evict a single known one.
 */
export class LoadingCache<V extends {}> {
  private readonly values: LRUCache<string, V>;
  private readonly loads: LRUCache<string, Loaded<V>>;
  private readonly cacheMisses: boolean;
  /** Bumped by every forget: a load that started before it is not kept. */
  private generation = 0;
  /** Loads run so far (each is one database round trip), for tests and diagnostics. */
  loadCount = 0;

  constructor(
    opts: LoadingCacheOptions<V>,
    onDispose?: (key: string) => void,
    onInsert?: (key: string) => void,
  ) {
    this.values = new LRUCache<string, V>({
      max: opts.max,
      ...(opts.ttlMs > 0 ? { ttl: opts.ttlMs } : {}),
      ...(onDispose ? { dispose: (_v: V, key: string) => onDispose(key) } : {}),
      ...(onInsert ? { onInsert: (_v: V, key: string) => onInsert(key) } : {}),
    });
    this.cacheMisses = opts.missMax > 0 && opts.missTtlMs > 0;
    this.loads = new LRUCache<string, Loaded<V>>({
      // Room for the loads in flight even when misses are not remembered.
      max: Math.max(opts.missMax, 1_000),
      ttl: this.cacheMisses ? opts.missTtlMs : 1,
      // A load pushed out of this cache (by many others in flight) or
      // forgotten while it runs still answers its callers; it is not kept.
      ignoreFetchAbort: true,
      fetchMethod: async (key) => {
        this.loadCount++;
        return { value: await opts.load(key) };
      },
    });
  }

  async get(key: string): Promise<V | undefined> {
    const hit = this.values.get(key);
    if (hit !== undefined) return hit;
    const generation = this.generation;
    const loaded = (await this.loads.fetch(key)) as Loaded<V>;
    if (loaded.value !== undefined) {
      this.loads.delete(key);
      if (generation === this.generation) this.values.set(key, loaded.value);
    } else if (!this.cacheMisses) this.loads.delete(key);
    return loaded.value;
  }

  /** Stores a value loaded some other way (several at once, say). */
  set(key: string, value: V): void {
    this.values.set(key, value);
  }

  peek(key: string): V | undefined {
    return this.values.get(key);
  }

  /** Drops these keys; loads running now are answered but not kept, whatever their key. */
  forget(...keys: string[]): void {
    this.generation++;
    for (const key of keys) {
      this.values.delete(key);
      this.loads.delete(key);
    }
  }

  clear(): void {
    this.generation++;
    this.values.clear();
    this.loads.clear();
  }

  get size(): number {
    return this.values.size;
  }
}
