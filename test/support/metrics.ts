/**
 * The samples of a server's Prometheus text exposition (`URL/metrics`), by
 * metric name with its labels. Throws unless it answers 200 in the text
 * format. Used by tests and by the bench (so it does not depend on vitest).
 */
export async function scrape(url: string): Promise<Map<string, number>> {
  const res = await fetch(`${url}/metrics`);
  const type = res.headers.get("content-type") ?? "";
  if (res.status !== 200 || !/^text\/plain; version=0\.0\.4/.test(type)) {
    throw new Error(`GET ${url}/metrics answered ${res.status} (${type})`);
  }
  const samples = new Map<string, number>();
  for (const line of (await res.text()).split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const at = line.lastIndexOf(" ");
    samples.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return samples;
}
