/**
 * The Internet-checksum inner loop in WebAssembly SIMD: 16 bytes per step, ~4× the speed of the
 * best JavaScript loop (64 KiB in ~4 µs instead of ~15 µs). Encapsulation checksums every byte
 * it sends, so this is the largest user-space cost of the data path.
 *
 * The module is assembled here by hand (a few dozen bytes) and works on a WebAssembly memory the
 * caller creates: the data path's buffers live in such memories, non-growable so that the
 * addresses handed to the kernel stay valid.
 *
 * @module
 */

/** Unsigned LEB128 (section sizes, SIMD opcode numbers). */
function leb(n: number): number[] {
  const out: number[] = [];
  do {
    let byte = n & 0x7f;
    n >>>= 7;
    if (n !== 0) byte |= 0x80;
    out.push(byte);
  } while (n !== 0);
  return out;
}

const section = (id: number, body: number[]) => [id, ...leb(body.length), ...body];
const name = (text: string) => [...leb(text.length), ...new TextEncoder().encode(text)];
const simd = (op: number) => [0xfd, ...leb(op)];

// Opcodes used (WebAssembly core + SIMD).
const BLOCK = 0x02, LOOP = 0x03, VOID = 0x40, BR = 0x0c, BR_IF = 0x0d, END = 0x0b;
const GET = 0x20, SET = 0x21, I32_CONST = 0x41, I64_CONST = 0x42;
const I32_ADD = 0x6a, I32_SUB = 0x6b, I32_AND = 0x71, I32_GE_U = 0x4f, I32_GT_U = 0x4b;
const I64_ADD = 0x7c, I64_AND = 0x83, I64_SHR_U = 0x88, I64_EQZ = 0x50, I32_WRAP_I64 = 0xa7;
const I64_LOAD32_U = 0x35;
const V128_LOAD = 0, V128_CONST = 12, I64X2_EXTRACT_LANE = 29;
const I64X2_EXTEND_LOW_I32X4_U = 201, I64X2_EXTEND_HIGH_I32X4_U = 202, I64X2_ADD = 206;

// sum(start, end): locals 0 start, 1 end, 2 i (i32), 3 acc (v128), 4 s (i64), 5 stop (i32).
// deno-fmt-ignore
const SUM_BODY = [
  4, 1, 0x7f, 1, 0x7b, 1, 0x7e, 1, 0x7f, // local declarations
  GET, 0, SET, 2, // i = start
  GET, 0, GET, 1, GET, 0, I32_SUB, I32_CONST, 0x70, I32_AND, I32_ADD, SET, 5, // stop = start + ((end - start) & -16)
  ...simd(V128_CONST), ...new Array(16).fill(0), SET, 3, // acc = 0
  // while (i < stop) { v = load128(i); acc += u64x2(low u32 lanes) + u64x2(high u32 lanes); i += 16 }
  BLOCK, VOID, LOOP, VOID,
  GET, 2, GET, 5, I32_GE_U, BR_IF, 1,
  GET, 3,
  GET, 2, ...simd(V128_LOAD), 4, 0, ...simd(I64X2_EXTEND_LOW_I32X4_U), ...simd(I64X2_ADD),
  GET, 2, ...simd(V128_LOAD), 4, 0, ...simd(I64X2_EXTEND_HIGH_I32X4_U), ...simd(I64X2_ADD),
  SET, 3,
  GET, 2, I32_CONST, 16, I32_ADD, SET, 2,
  BR, 0, END, END,
  // s = acc.lane0 + acc.lane1
  GET, 3, ...simd(I64X2_EXTRACT_LANE), 0, GET, 3, ...simd(I64X2_EXTRACT_LANE), 1, I64_ADD, SET, 4,
  // while (i + 4 <= end) { s += load32_u(i); i += 4 }
  BLOCK, VOID, LOOP, VOID,
  GET, 2, I32_CONST, 4, I32_ADD, GET, 1, I32_GT_U, BR_IF, 1,
  GET, 4, GET, 2, I64_LOAD32_U, 2, 0, I64_ADD, SET, 4,
  GET, 2, I32_CONST, 4, I32_ADD, SET, 2,
  BR, 0, END, END,
  // while (s >> 16) s = (s & 0xffff) + (s >> 16)
  BLOCK, VOID, LOOP, VOID,
  GET, 4, I64_CONST, 16, I64_SHR_U, I64_EQZ, BR_IF, 1,
  GET, 4, I64_CONST, 0xff, 0xff, 0x03, I64_AND, GET, 4, I64_CONST, 16, I64_SHR_U, I64_ADD, SET, 4,
  BR, 0, END, END,
  GET, 4, I32_WRAP_I64, END,
];

// deno-fmt-ignore
const MODULE_BYTES = new Uint8Array([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version 1
  ...section(1, [1, 0x60, 2, 0x7f, 0x7f, 1, 0x7f]), // type: (i32, i32) -> i32
  ...section(2, [1, ...name("m"), ...name("mem"), 0x02, 0x00, 0x01]), // import memory (min 1 page)
  ...section(3, [1, 0]), // one function of type 0
  ...section(7, [1, ...name("sum"), 0x00, 0]), // export it as "sum"
  ...section(10, [1, ...leb(SUM_BODY.length), ...SUM_BODY]),
]);

let compiled: WebAssembly.Module | undefined;

/**
 * The folded 16-bit sum of the little-endian 32-bit words in `[start, end)` of `memory` (start
 * 4-aligned; a partial last word is ignored). `end` must not pass the memory's end.
 */
export type WordSum = (start: number, end: number) => number;

/**
 * A non-growable WebAssembly memory of at least `bytes` bytes and the {@link WordSum} over it.
 *
 * @example
 * ```ts
 * const { memory, sum } = summingMemory(70_000);
 * new Uint8Array(memory.buffer).set(packet);
 * const le = sum(0, packet.length & ~3);
 * ```
 */
export function summingMemory(bytes: number): { memory: WebAssembly.Memory; sum: WordSum } {
  const pages = Math.max(1, Math.ceil(bytes / 65_536));
  const memory = new WebAssembly.Memory({ initial: pages, maximum: pages });
  compiled ??= new WebAssembly.Module(MODULE_BYTES);
  const instance = new WebAssembly.Instance(compiled, { m: { mem: memory } });
  return { memory, sum: instance.exports.sum as WordSum };
}
