/// <reference lib="deno.worker" />
/**
 * Stand-in data-path Worker for data_path_test.ts: dies on its start message, as a Worker
 * whose loop hit an unexpected syscall error would.
 */
self.onmessage = () => {
  throw new Error("boom: the data path hit a wall");
};
