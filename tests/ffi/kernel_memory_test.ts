import assert from "node:assert/strict";
import { addressOf, kernelMemory, setPointer, setSize } from "../../ffi/kernel_memory.ts";

Deno.test("kernel memory: the address is the buffer's own, as a number", () => {
  const mem = kernelMemory(24);
  assert.equal(mem.bytes.length, 24);
  assert.equal(BigInt(mem.address), Deno.UnsafePointer.value(Deno.UnsafePointer.of(mem.bytes)));
  assert.equal(addressOf(mem.bytes.subarray(8)), mem.address + 8);
});

Deno.test("kernel memory: setPointer stores the same 8 bytes as a BigInt store", () => {
  const mem = kernelMemory(16);
  for (const address of [0, 1, 0xffff_ffff, 0x1_0000_0000, 0x7fbd_60c8_0002, 2 ** 47 - 1]) {
    setPointer(mem.view, 0, address);
    mem.view.setBigUint64(8, BigInt(address), true);
    assert.deepEqual([...mem.bytes.subarray(0, 8)], [...mem.bytes.subarray(8, 16)], `${address}`);
  }
});

Deno.test("kernel memory: setSize clears the high half left by an earlier store", () => {
  const mem = kernelMemory(8);
  mem.view.setBigUint64(0, 0xffff_ffff_ffff_ffffn, true);
  setSize(mem.view, 0, 1500);
  assert.equal(mem.view.getBigUint64(0, true), 1500n);
});
