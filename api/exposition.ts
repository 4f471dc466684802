/**
 * The Prometheus text exposition format (0.0.4), written directly: a metric family is a name, a
 * help text, a type and a function that returns its samples when scraped. This replaces
 * prom-client, whose import alone cost about 20 MB of resident memory on every node
 * (`deno task bench footprint`), for the few dozen series Tartan exports.
 *
 * @module
 */

/** The content type of {@link renderExposition}'s output. */
export const EXPOSITION_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

/** Label names to values. */
export type Labels<L extends string = string> = Readonly<Record<L, string>>;

/** One series value; `suffix` names a histogram's `_bucket`, `_sum` or `_count` series. */
export interface Sample {
  readonly labels?: Labels;
  readonly value: number;
  readonly suffix?: string;
}

/** A metric family, sampled at scrape time. */
export interface MetricFamily {
  readonly name: string;
  readonly help: string;
  readonly type: "counter" | "gauge" | "histogram";
  samples(): readonly Sample[] | Promise<readonly Sample[]>;
}

const escapeText = (text: string) => text.replaceAll("\\", "\\\\").replaceAll("\n", "\\n");

/** A sample value as Prometheus (Go's ParseFloat) reads it. */
export function formatValue(value: number): string {
  if (value === Infinity) return "+Inf";
  if (value === -Infinity) return "-Inf";
  if (Number.isNaN(value)) return "NaN";
  return String(value);
}

function formatLabels(labels: Labels | undefined): string {
  const pairs = Object.entries(labels ?? {});
  if (pairs.length === 0) return "";
  const text = pairs.map(([name, value]) =>
    `${name}="${escapeText(value).replaceAll('"', '\\"')}"`
  );
  return `{${text.join(",")}}`;
}

/** Render every family: `# HELP`, `# TYPE`, then one line per sample. */
export async function renderExposition(families: readonly MetricFamily[]): Promise<string> {
  const blocks = await Promise.all(families.map(async (family) => {
    const lines = [`# HELP ${family.name} ${escapeText(family.help)}`];
    lines.push(`# TYPE ${family.name} ${family.type}`);
    for (const { labels, value, suffix = "" } of await family.samples()) {
      lines.push(`${family.name}${suffix}${formatLabels(labels)} ${formatValue(value)}`);
    }
    return lines.join("\n") + "\n";
  }));
  return blocks.join("\n");
}

interface HistogramSeries {
  readonly labels: Labels;
  readonly counts: number[];
  sum: number;
  count: number;
}

/** Options of {@link Histogram}. */
export interface HistogramOptions {
  readonly name: string;
  readonly help: string;
  /** Upper bounds, ascending; `+Inf` is implied. */
  readonly buckets: readonly number[];
  /** A histogram without label names exports its zero series before the first observation. */
  readonly labelNames?: readonly string[];
}

/**
 * A cumulative histogram (the one metric kind whose value the daemon state does not hold: it is
 * observed into as things happen).
 */
export class Histogram<L extends string = never> implements MetricFamily {
  readonly type = "histogram";
  readonly name: string;
  readonly help: string;
  readonly #buckets: readonly number[];
  readonly #series = new Map<string, HistogramSeries>();

  constructor(options: HistogramOptions) {
    this.name = options.name;
    this.help = options.help;
    this.#buckets = options.buckets;
    if (!options.labelNames?.length) this.#seriesFor({});
  }

  /** Record one value, under `labels` when the histogram has label names. */
  observe(value: number): void;
  observe(labels: Labels<L>, value: number): void;
  observe(labelsOrValue: Labels<L> | number, value?: number): void {
    const [labels, observed] = typeof labelsOrValue === "number"
      ? [{}, labelsOrValue]
      : [labelsOrValue, value ?? 0];
    const series = this.#seriesFor(labels);
    for (let i = 0; i < this.#buckets.length; i++) {
      if (observed <= this.#buckets[i]) series.counts[i]++;
    }
    series.sum += observed;
    series.count++;
  }

  /** Start timing; the returned function observes the seconds elapsed and returns them. */
  startTimer(labels: Labels<L> = {} as Labels<L>): () => number {
    const start = performance.now();
    return () => {
      const seconds = (performance.now() - start) / 1000;
      this.observe(labels, seconds);
      return seconds;
    };
  }

  samples(): Sample[] {
    const out: Sample[] = [];
    for (const { labels, counts, sum, count } of this.#series.values()) {
      this.#buckets.forEach((bound, i) => {
        out.push({
          suffix: "_bucket",
          labels: { le: formatValue(bound), ...labels },
          value: counts[i],
        });
      });
      out.push({ suffix: "_bucket", labels: { le: "+Inf", ...labels }, value: count });
      out.push({ suffix: "_sum", labels, value: sum });
      out.push({ suffix: "_count", labels, value: count });
    }
    return out;
  }

  #seriesFor(labels: Labels): HistogramSeries {
    const key = JSON.stringify(Object.entries(labels).sort());
    let series = this.#series.get(key);
    if (!series) {
      series = { labels: { ...labels }, counts: this.#buckets.map(() => 0), sum: 0, count: 0 };
      this.#series.set(key, series);
    }
    return series;
  }
}
