/**
 * The `tartan` command line: one binary for the daemon, the CNI plugin and the tools.
 *
 * Invoked as `flannel` (the name a CNI runtime uses for `"type": "flannel"`) it is the CNI
 * plugin; invoked as `flanneld` it is the daemon, so it can drop in for both upstream binaries.
 *
 * @module
 */
import { basename } from "node:path";
import { CONFIG_CHECK_USAGE, configCheckCommand } from "./config/check.ts";
import { FlagError, parseRunFlags, usage as runUsage } from "./config/flags.ts";
import { STATUS_USAGE, statusCommand } from "./api/status_cli.ts";
import { runCniPlugin } from "./cni/plugin.ts";
import { cleanupCommand } from "./cleanup.ts";
import { runDaemon } from "./daemon.ts";
import { LAB_USAGE, labCommand } from "./lab/command.ts";
import { VERSION } from "./version.ts";

/** A subcommand: what it does and how it runs; resolves to the process exit status. */
interface Command {
  readonly summary: string;
  readonly usage: string;
  run(args: string[]): Promise<number>;
}

const COMMANDS: Record<string, Command> = {
  run: {
    summary: "run the node daemon (accepts every flanneld flag)",
    usage: "tartan run [flanneld flags…]   (see `tartan run --help`)",
    run: runCommand,
  },
  status: {
    summary: "show a node's lease, peers and backend health from its admin API",
    usage: STATUS_USAGE,
    run: statusCommand,
  },
  cni: {
    summary: "the flannel CNI plugin (also used when the binary is named `flannel`)",
    usage: "CNI_COMMAND=ADD|DEL|CHECK|VERSION|STATUS … tartan cni < config.json",
    run: runCniPlugin,
  },
  lab: {
    summary: "a multi-node cluster in network namespaces (the demo)",
    usage: LAB_USAGE,
    run: labCommand,
  },
  config: {
    summary: "validate a net-conf file and print the effective config",
    usage: "tartan config check FILE [--mode etcd|kube]",
    run: runConfigCheck,
  },
  cleanup: {
    summary: "remove every device, route, rule and file Tartan created on this node",
    usage: "tartan cleanup [--subnet-file PATH]",
    run: cleanupCommand,
  },
  version: {
    summary: "print the version",
    usage: "tartan version",
    run: () => {
      console.log(`tartan ${VERSION}`);
      return Promise.resolve(0);
    },
  },
};

async function runCommand(args: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseRunFlags(args, Deno.env.toObject());
  } catch (err) {
    if (!(err instanceof FlagError)) throw err;
    console.error(`${err.message}\n\n${runUsage()}`);
    return 2;
  }
  if (parsed.help) {
    console.log(runUsage());
    return 0;
  }
  if (parsed.options.version) {
    console.error(VERSION);
    return 0;
  }
  return await runDaemon(parsed);
}

async function runConfigCheck(args: string[]): Promise<number> {
  if (args[0] !== "check") {
    console.error(CONFIG_CHECK_USAGE);
    return 2;
  }
  try {
    const result = await configCheckCommand(args.slice(1));
    for (const warning of result.warnings) console.error(`warning: ${warning}`);
    (result.ok ? console.log : console.error)(result.output);
    return result.ok ? 0 : 1;
  } catch (err) {
    if (!(err instanceof FlagError)) throw err;
    console.error(`${err.message}\n${CONFIG_CHECK_USAGE}`);
    return 2;
  }
}

function helpText(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((name) => name.length));
  const lines = Object.entries(COMMANDS).map(([name, cmd]) =>
    `  ${name.padEnd(width)}  ${cmd.summary}`
  );
  return [
    `tartan ${VERSION}: a Flannel-compatible overlay network for Kubernetes`,
    "",
    "usage: tartan <command> [arguments]",
    "",
    "commands:",
    ...lines,
    "",
    "`tartan <command> --help` shows a command's usage.",
  ].join("\n");
}

/** Map the program name and arguments to a command name and its arguments. */
export function route(programName: string, args: string[]): [string, string[]] {
  if (programName === "flannel") return ["cni", args];
  if (programName === "flanneld") return ["run", args];
  return [args[0] ?? "help", args.slice(1)];
}

/** Run the CLI; resolves to the exit status. */
export async function main(programName: string, args: string[]): Promise<number> {
  const [name, rest] = route(programName, args);
  if (name === "help" || name === "--help" || name === "-h") {
    console.log(helpText());
    return 0;
  }
  const command = COMMANDS[name];
  if (!command) {
    console.error(`tartan: unknown command ${JSON.stringify(name)}\n\n${helpText()}`);
    return 2;
  }
  if (name !== "run" && (rest[0] === "--help" || rest[0] === "-h")) {
    console.log(`usage: ${command.usage}\n\n${command.summary}`);
    return 0;
  }
  return await command.run(rest);
}

/**
 * The name the program was started by. `Deno.execPath()` resolves symlinks, so a `flannel`
 * symlink to the binary is only visible in argv[0], which /proc keeps.
 */
function programName(): string {
  try {
    const argv0 = Deno.readTextFileSync("/proc/self/cmdline").split("\0")[0];
    if (argv0) return basename(argv0);
  } catch { /* not Linux: fall back */ }
  return basename(Deno.execPath());
}

if (import.meta.main) {
  Deno.exit(await main(programName(), Deno.args));
}
