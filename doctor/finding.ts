/**
 * What `tartan doctor` reports: one finding per problem, each with what is wrong, the evidence
 * it rests on and the fix, plus the list of what was checked.
 *
 * @module
 */

/** One problem. */
export interface Finding {
  /** Which check found it (`peer-overlay`, `ip-forward`, `cni0-address`, …). */
  readonly check: string;
  /** One line: what is wrong, naming the peer or device. */
  readonly title: string;
  /** Why it matters, in a sentence or two. */
  readonly detail: string;
  /** The facts: peer, address, port, file, sysctl, … */
  readonly evidence: Readonly<Record<string, string>>;
  /** What to do about it. */
  readonly fix: string;
}

/** Everything one doctor run found. */
export interface DoctorReport {
  /** True when there are no findings. */
  readonly healthy: boolean;
  /** Node and network, when the daemon told us. */
  readonly node: string | null;
  readonly findings: readonly Finding[];
  /** Checks that ran (and found nothing or something). */
  readonly checked: readonly string[];
  /** Facts worth knowing that are not problems (e.g. probing is off, no daemon). */
  readonly notes: readonly string[];
}

/** The result of one check: its name, what it found and what it noted. */
export interface CheckResult {
  readonly check: string;
  readonly findings: Finding[];
  readonly notes?: string[];
}

/** Put check results together into a report. */
export function assembleReport(node: string | null, results: readonly CheckResult[]): DoctorReport {
  const findings = results.flatMap((result) => result.findings);
  return {
    healthy: findings.length === 0,
    node,
    findings,
    checked: results.map((result) => result.check),
    notes: results.flatMap((result) => result.notes ?? []),
  };
}

/** Lines of the text output are wrapped at this width. */
const WIDTH = 100;

/** `label` then `text` wrapped at {@link WIDTH}, continuation lines indented under the text. */
function labelled(label: string, text: string): string[] {
  const indent = " ".repeat(label.length);
  const lines: string[] = [];
  let line = label;
  for (const word of text.split(" ")) {
    if (line.length > indent.length && line.length + 1 + word.length > WIDTH) {
      lines.push(line);
      line = indent + word;
    } else {
      line += line.length > indent.length ? ` ${word}` : word;
    }
  }
  lines.push(line);
  return lines;
}

/** The report as text for a terminal. */
export function renderReport(report: DoctorReport): string {
  const where = report.node ? ` on ${report.node}` : "";
  const count = report.findings.length;
  const lines = [
    report.healthy
      ? `tartan doctor: healthy${where}`
      : `tartan doctor: ${count} problem${count === 1 ? "" : "s"}${where}`,
  ];
  for (const finding of report.findings) {
    const evidence = Object.entries(finding.evidence).map(([key, value]) => `${key}=${value}`);
    lines.push(
      "",
      ...labelled("✗ ", finding.title),
      ...labelled("  what:     ", finding.detail),
      ...labelled("  evidence: ", evidence.join(" ")),
      ...labelled("  fix:      ", finding.fix),
    );
  }
  if (report.notes.length > 0) lines.push("", ...report.notes.map((note) => `note: ${note}`));
  lines.push("", ...labelled("checked: ", report.checked.join(", ")));
  return lines.join("\n");
}
