// HAProxy's request log (httplog, the shipped template's `log stdout`) read after
// the soak: which requests did not end normally (termination state other than
// `----`), which were retried or redispatched, and which were slow — what the
// client's socket errors were on HAProxy's side, and when.
import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';

export interface HAProxyLogSummary {
  requests: number;
  /** termination state → count, for states other than `----` */
  abnormal: Record<string, number>;
  /** requests HAProxy tried again (retries field > 0, `+` when redispatched) */
  retried: number;
  /** requests that took longer than 1 s in all (Ta) */
  slow: number;
  /** up to `keep` abnormal or slow lines, as logged */
  examples: string[];
}

// %b/%s %TR/%Tw/%Tc/%Tr/%Ta %ST %B %CC %CS %tsc %ac/%fc/%bc/%sc/%rc
const LINE = / (\S+)\/(\S+) (-?\d+)\/(-?\d+)\/(-?\d+)\/(-?\d+)\/\+?(-?\d+) (-?\d+) \+?\d+ \S+ \S+ (\S{4}) \d+\/\d+\/\d+\/\d+\/(\+?)(\d+) /;

export async function summarizeHAProxyLog(file: string, keep = 20): Promise<HAProxyLogSummary> {
  const out: HAProxyLogSummary = { requests: 0, abnormal: {}, retried: 0, slow: 0, examples: [] };
  const lines = createInterface({ input: createReadStream(file, 'utf8'), crlfDelay: Infinity });
  for await (const line of lines) {
    const m = LINE.exec(line);
    if (!m) continue;
    out.requests++;
    const state = m[9]!;
    const ta = Number(m[7]);
    const retries = Number(m[11]);
    if (retries > 0 || m[10] === '+') out.retried++;
    if (ta > 1000) out.slow++;
    if (state !== '----') out.abnormal[state] = (out.abnormal[state] ?? 0) + 1;
    if ((state !== '----' || ta > 1000) && out.examples.length < keep) out.examples.push(line);
  }
  return out;
}
