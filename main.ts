/**
 * The `tartan` command line: one binary for the daemon, the CNI plugin and the tools.
 *
 * Invoked as `flannel` (the name a CNI runtime uses for `"type": "flannel"`) it is the CNI
 * plugin; invoked as `flanneld` it is the daemon, so it can drop in for both upstream binaries.
 *
 * @module
 */
import { VERSION } from "./version.ts";

/** What running a subcommand needs; loaded on demand. */
interface CommandModule {
  readonly usage: string;
  run(args: string[]): Promise<number>;
}

/**
 * A subcommand. Its module is imported only when the subcommand runs, so the CNI plugin (run
 * once per pod) does not load the daemon, the Kubernetes client or the lab.
 */
interface Command {
  readonly summary: string;
  load(): Promise<CommandModule>;
}

const COMMANDS: Record<string, Command> = {
  run: {
    summary: "run the node daemon (accepts every flanneld flag)",
    load: async () => {
      const { RUN_USAGE, runCommand } = await import("./daemon.ts");
      return { usage: RUN_USAGE, run: runCommand };
    },
  },
  status: {
    summary: "show a node's lease, peers and backend health from its admin API",
    load: async () => {
      const { STATUS_USAGE, statusCommand } = await import("./api/status_cli.ts");
      return { usage: STATUS_USAGE, run: statusCommand };
    },
  },
  doctor: {
    summary: "find why pods on different nodes cannot talk, and name the fix",
    load: async () => {
      const { DOCTOR_USAGE, doctorCommand } = await import("./doctor/command.ts");
      return { usage: DOCTOR_USAGE, run: doctorCommand };
    },
  },
  cni: {
    summary: "the flannel CNI plugin (also used when the binary is named `flannel`)",
    load: async () => {
      const { runCniPlugin } = await import("./cni/plugin.ts");
      return {
        usage: "CNI_COMMAND=ADD|DEL|CHECK|VERSION|STATUS … tartan cni < config.json",
        run: runCniPlugin,
      };
    },
  },
  lab: {
    summary: "a multi-node cluster in network namespaces (the demo)",
    load: async () => {
      const { LAB_USAGE, labCommand } = await import("./lab/command.ts");
      return { usage: LAB_USAGE, run: labCommand };
    },
  },
  config: {
    summary: "validate a net-conf file and print the effective config",
    load: async () => {
      const { CONFIG_CHECK_USAGE, configCommand } = await import("./config/check.ts");
      return { usage: CONFIG_CHECK_USAGE, run: configCommand };
    },
  },
  cleanup: {
    summary: "remove every device, route, rule and file Tartan created on this node",
    load: async () => {
      const { CLEANUP_USAGE, cleanupCommand } = await import("./cleanup.ts");
      return { usage: CLEANUP_USAGE, run: cleanupCommand };
    },
  },
  version: {
    summary: "print the version",
    load: () =>
      Promise.resolve({
        usage: "tartan version",
        run: () => {
          console.log(`tartan ${VERSION}`);
          return Promise.resolve(0);
        },
      }),
  },
};

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
  const module = await command.load();
  if (name !== "run" && (rest[0] === "--help" || rest[0] === "-h")) {
    console.log(`${module.usage}\n\n${command.summary}`);
    return 0;
  }
  return await module.run(rest);
}

/** The last component of a path (node:path's basename, which would cost ~3 MB to load). */
function baseName(path: string): string {
  return path.slice(path.lastIndexOf("/") + 1);
}

/**
 * The name the program was started by. `Deno.execPath()` resolves symlinks, so a `flannel`
 * symlink to the binary is only visible in argv[0], which /proc keeps.
 */
function programName(): string {
  try {
    const argv0 = Deno.readTextFileSync("/proc/self/cmdline").split("\0")[0];
    if (argv0) return baseName(argv0);
  } catch { /* not Linux: fall back */ }
  return baseName(Deno.execPath());
}

if (import.meta.main) {
  Deno.exit(await main(programName(), Deno.args));
}
