/**
 * Running an extension command as flannel does (spec §6.8): the text is split on whitespace
 * (Go's `strings.Fields`), `$VAR` and `${VAR}` in every word are expanded (Go's `os.Expand`) from
 * the environment plus the command's own variables, and the program runs directly, without a
 * shell, with those variables also in its environment and `stdin` plus a newline on its standard
 * input. Its output (stdout, then stderr) comes back trimmed.
 *
 * @module
 */
import { CommandNotFoundError, runCommand } from "../../exec.ts";
import { errorText } from "../../log.ts";

/** Go's `unicode.IsSpace`: what `strings.Fields` splits on. */
const GO_SPACE = /[\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+/;

/** `strings.Fields`: the words of `text`, split on runs of white space. */
export function splitFields(text: string): string[] {
  return text.split(GO_SPACE).filter((word) => word !== "");
}

const SPECIAL = "*#$@!?-0123456789";
const isAlphaNum = (c: string) => /^[A-Za-z0-9_]$/.test(c);

/** Go's `getShellName`: the variable name after a `$`, and how many characters it took. */
function shellName(s: string): [name: string, width: number] {
  if (s[0] === "{") {
    if (s.length > 2 && SPECIAL.includes(s[1]) && s[2] === "}") return [s[1], 3];
    const close = s.indexOf("}", 1);
    if (close === 1) return ["", 2]; // bad syntax: "${}" is eaten
    if (close < 0) return ["", 1]; // bad syntax: "${" is eaten
    return [s.slice(1, close), close + 1];
  }
  if (SPECIAL.includes(s[0])) return [s[0], 1];
  let i = 0;
  while (i < s.length && isAlphaNum(s[i])) i++;
  return [s.slice(0, i), i];
}

/**
 * Go's `os.Expand`: `$NAME`, `${NAME}` and the one-character special names replaced through
 * `lookup` (unknown ones by ""); a `$` followed by no name stays, bad `${` syntax is dropped.
 */
export function expandVariables(text: string, lookup: (name: string) => string): string {
  let out = "";
  let from = 0;
  for (let j = 0; j < text.length; j++) {
    if (text[j] !== "$" || j + 1 >= text.length) continue;
    out += text.slice(from, j);
    const [name, width] = shellName(text.slice(j + 1));
    if (name) out += lookup(name);
    else if (width === 0) out += "$";
    j += width;
    from = j + 1;
  }
  return out + text.slice(from);
}

/** What a command printed, and whether it succeeded. */
export interface CommandOutcome {
  readonly ok: boolean;
  /** Trimmed stdout then stderr (flannel's combined output). */
  readonly output: string;
  /** Why it failed: the exit status, a missing program, the time limit. */
  readonly failure?: string;
}

/** How long one command may run before it is killed and counted as failed. */
export const COMMAND_TIMEOUT_MS = 60_000;

/**
 * Run `command` (a net-conf string) with `variables` in its environment and for expansion, and
 * `stdin` + "\n" on its input. Never throws: a program that cannot start is a failed outcome.
 */
export async function runExtensionCommand(
  command: string,
  variables: Readonly<Record<string, string>>,
  stdin = "",
): Promise<CommandOutcome> {
  const env = { ...Deno.env.toObject(), ...variables };
  const [program, ...args] = splitFields(command).map((word) =>
    expandVariables(word, (name) => env[name] ?? "")
  );
  if (!program) return { ok: false, output: "", failure: "the command names no program" };
  try {
    const { code, signal, stdout, stderr } = await runCommand([program, ...args], {
      env: variables,
      stdin: `${stdin}\n`,
      allowFail: true,
      timeoutMs: COMMAND_TIMEOUT_MS,
    });
    const output = (stdout + stderr).trim();
    if (code === 0) return { ok: true, output };
    return { ok: false, output, failure: signal ? `killed by ${signal}` : `exit status ${code}` };
  } catch (err) {
    const failure = err instanceof CommandNotFoundError
      ? `${program}: no such program`
      : errorText(err);
    return { ok: false, output: "", failure };
  }
}
