// A guest helper for AssemblyScript: the proxy-wasm lifecycle Layotto drives (docs/wasm.md),
// the request and response buffers, and one function per host call of every building block.
//
// A function re-exports this module (`export * from "./layotto"`), names itself in
// `proxy_get_id` with `registerId`, and registers its handler with `onRequest`:
//
//   export * from "./layotto";
//   export function proxy_get_id(): void { registerId("my_function"); }
//   onRequest((body: ArrayBuffer): bool => { setResponse(body); return true; });
//
// Calls that can fail return null (or false, or -1) and leave the host's answer in
// `lastResult`. Results the host hands back are allocated through the exported `malloc`
// and freed once copied.

export enum WasmResult {
  Ok = 0,
  NotFound = 1,
  BadArgument = 2,
  InvalidMemoryAccess = 6,
  CasMismatch = 8,
  InternalFailure = 10,
  Unimplemented = 12,
}

export enum LogLevel { Trace = 0, Debug = 1, Info = 2, Warn = 3, Error = 4, Critical = 5 }

// @ts-ignore: decorator
@external("env", "proxy_log") declare function proxy_log(level: u32, ptr: usize, size: usize): u32;
// @ts-ignore: decorator
@external("env", "proxy_get_buffer_bytes")
declare function proxy_get_buffer_bytes(kind: u32, start: u32, length: u32, ptr: usize, size: usize): u32;
// @ts-ignore: decorator
@external("env", "proxy_set_buffer_bytes")
declare function proxy_set_buffer_bytes(kind: u32, start: u32, length: u32, ptr: usize, size: usize): u32;
// @ts-ignore: decorator
@external("env", "proxy_get_header_map_value")
declare function proxy_get_header_map_value(map: u32, key: usize, keySize: usize, ptr: usize, size: usize): u32;
// @ts-ignore: decorator
@external("env", "proxy_get_state")
declare function proxy_get_state(s: usize, ss: usize, k: usize, ks: usize, ptr: usize, size: usize): u32;
// @ts-ignore: decorator
@external("env", "proxy_save_state")
declare function proxy_save_state(s: usize, ss: usize, k: usize, ks: usize, v: usize, vs: usize): u32;
// @ts-ignore: decorator
@external("env", "proxy_delete_state")
declare function proxy_delete_state(s: usize, ss: usize, k: usize, ks: usize): u32;
// @ts-ignore: decorator
@external("env", "proxy_publish_event")
declare function proxy_publish_event(p: usize, ps: usize, t: usize, ts: usize, d: usize, ds: usize, c: usize, cs: usize): u32;
// @ts-ignore: decorator
@external("env", "proxy_next_id")
declare function proxy_next_id(s: usize, ss: usize, k: usize, ks: usize, ret: usize): u32;
// @ts-ignore: decorator
@external("env", "proxy_try_lock")
declare function proxy_try_lock(s: usize, ss: usize, r: usize, rs: usize, o: usize, os: usize, expire: i32, ret: usize): u32;
// @ts-ignore: decorator
@external("env", "proxy_unlock")
declare function proxy_unlock(s: usize, ss: usize, r: usize, rs: usize, o: usize, os: usize, ret: usize): u32;
// @ts-ignore: decorator
@external("env", "proxy_get_configuration")
declare function proxy_get_configuration(s: usize, ss: usize, k: usize, ks: usize, ptr: usize, size: usize): u32;
// @ts-ignore: decorator
@external("env", "proxy_get_secret")
declare function proxy_get_secret(s: usize, ss: usize, k: usize, ks: usize, ptr: usize, size: usize): u32;
// @ts-ignore: decorator
@external("env", "proxy_invoke_binding")
declare function proxy_invoke_binding(n: usize, ns: usize, o: usize, os: usize, d: usize, ds: usize, ptr: usize, size: usize): u32;
// @ts-ignore: decorator
@external("env", "proxy_invoke_service")
declare function proxy_invoke_service(i: usize, is: usize, m: usize, ms: usize, d: usize, ds: usize, ptr: usize, size: usize): u32;

const BUFFER_REQUEST_BODY: u32 = 0;
const BUFFER_RESPONSE_BODY: u32 = 1;
const BUFFER_CALL_DATA: u32 = 8;
const MAP_REQUEST_HEADERS: u32 = 0;

// Where the host writes a result's address and size, or a number.
const RETURNED = memory.data(16);

export let lastResult: WasmResult = WasmResult.Ok;

let handler: ((body: ArrayBuffer) => bool) | null = null;

// ---- what the host calls ----

export function malloc(size: usize): usize {
  return heap.alloc(size);
}

export function proxy_abi_version_0_2_0(): void {}
export function proxy_on_context_create(context: u32, parent: u32): void {}
export function proxy_on_vm_start(root: u32, size: u32): bool { return true; }
export function proxy_on_configure(root: u32, size: u32): bool { return true; }
export function proxy_on_request_headers(context: u32, headers: u32, endOfStream: u32): u32 { return 0; }
export function proxy_on_done(context: u32): bool { return true; }
export function proxy_on_delete(context: u32): void {}

export function proxy_on_request_body(context: u32, size: u32, endOfStream: u32): u32 {
  const run = handler;
  if (run == null) return 1;
  return run(requestBody()) ? 0 : 1;
}

// ---- for the function ----

export function onRequest(run: (body: ArrayBuffer) => bool): void {
  handler = run;
}

/** Call from `proxy_get_id`: the id requests name this function by. */
export function registerId(id: string): void {
  const bytes = String.UTF8.encode(id);
  proxy_set_buffer_bytes(BUFFER_CALL_DATA, 0, 0, changetype<usize>(bytes), bytes.byteLength);
}

function ptr(buffer: ArrayBuffer): usize { return changetype<usize>(buffer); }
function utf8(text: string): ArrayBuffer { return String.UTF8.encode(text); }

function answered(result: u32): bool {
  lastResult = result;
  return result == WasmResult.Ok;
}

// The bytes the host allocated for the last result, copied out and freed.
function taken(): ArrayBuffer {
  const at = load<u32>(RETURNED);
  const size = load<u32>(RETURNED, 4);
  const out = new ArrayBuffer(size);
  if (size > 0) {
    memory.copy(changetype<usize>(out), at, size);
    heap.free(at);
  }
  return out;
}

function bytes(result: u32): ArrayBuffer | null {
  return answered(result) ? taken() : null;
}

export function requestBody(): ArrayBuffer {
  proxy_get_buffer_bytes(BUFFER_REQUEST_BODY, 0, 0x7fffffff, RETURNED, RETURNED + 4);
  return taken();
}

export function requestHeader(name: string): string | null {
  const key = utf8(name);
  const found = bytes(proxy_get_header_map_value(MAP_REQUEST_HEADERS, ptr(key), key.byteLength, RETURNED, RETURNED + 4));
  return found == null ? null : String.UTF8.decode(found);
}

export function setResponse(body: ArrayBuffer): void {
  proxy_set_buffer_bytes(BUFFER_RESPONSE_BODY, 0, 0, ptr(body), body.byteLength);
}

export function appendResponse(text: string): void {
  const body = utf8(text);
  proxy_set_buffer_bytes(BUFFER_RESPONSE_BODY, 0x7fffffff, 0, ptr(body), body.byteLength);
}

export function log(level: LogLevel, message: string): void {
  const text = utf8(message);
  proxy_log(level, ptr(text), text.byteLength);
}

export function getState(store: string, key: string): ArrayBuffer | null {
  const s = utf8(store), k = utf8(key);
  return bytes(proxy_get_state(ptr(s), s.byteLength, ptr(k), k.byteLength, RETURNED, RETURNED + 4));
}

export function saveState(store: string, key: string, value: ArrayBuffer): bool {
  const s = utf8(store), k = utf8(key);
  return answered(proxy_save_state(ptr(s), s.byteLength, ptr(k), k.byteLength, ptr(value), value.byteLength));
}

export function deleteState(store: string, key: string): bool {
  const s = utf8(store), k = utf8(key);
  return answered(proxy_delete_state(ptr(s), s.byteLength, ptr(k), k.byteLength));
}

export function publishEvent(pubsub: string, topic: string, data: ArrayBuffer, contentType: string): bool {
  const p = utf8(pubsub), t = utf8(topic), c = utf8(contentType);
  return answered(proxy_publish_event(ptr(p), p.byteLength, ptr(t), t.byteLength, ptr(data), data.byteLength, ptr(c), c.byteLength));
}

/** The next id of `key`, or -1 (see lastResult). */
export function nextId(store: string, key: string): i64 {
  const s = utf8(store), k = utf8(key);
  return answered(proxy_next_id(ptr(s), s.byteLength, ptr(k), k.byteLength, RETURNED + 8)) ? load<i64>(RETURNED, 8) : -1;
}

/** Whether the lock was taken (false when it was not, or on failure: see lastResult). */
export function tryLock(store: string, resource: string, owner: string, expireSeconds: i32): bool {
  const s = utf8(store), r = utf8(resource), o = utf8(owner);
  const result = proxy_try_lock(ptr(s), s.byteLength, ptr(r), r.byteLength, ptr(o), o.byteLength, expireSeconds, RETURNED + 8);
  return answered(result) && load<u32>(RETURNED, 8) == 1;
}

/** Upstream's unlock status (0 success, 1 no such lock, 2 another owner's), or -1. */
export function unlock(store: string, resource: string, owner: string): i32 {
  const s = utf8(store), r = utf8(resource), o = utf8(owner);
  const result = proxy_unlock(ptr(s), s.byteLength, ptr(r), r.byteLength, ptr(o), o.byteLength, RETURNED + 8);
  return answered(result) ? load<i32>(RETURNED, 8) : -1;
}

export function getConfiguration(store: string, key: string): ArrayBuffer | null {
  const s = utf8(store), k = utf8(key);
  return bytes(proxy_get_configuration(ptr(s), s.byteLength, ptr(k), k.byteLength, RETURNED, RETURNED + 4));
}

/** The secret's fields. */
export function getSecret(store: string, key: string): Map<string, string> | null {
  const s = utf8(store), k = utf8(key);
  const raw = bytes(proxy_get_secret(ptr(s), s.byteLength, ptr(k), k.byteLength, RETURNED, RETURNED + 4));
  return raw == null ? null : decodePairs(raw);
}

export function invokeBinding(name: string, operation: string, data: ArrayBuffer): ArrayBuffer | null {
  const n = utf8(name), o = utf8(operation);
  return bytes(proxy_invoke_binding(ptr(n), n.byteLength, ptr(o), o.byteLength, ptr(data), data.byteLength, RETURNED, RETURNED + 4));
}

export function invokeService(id: string, method: string, param: ArrayBuffer): ArrayBuffer | null {
  const i = utf8(id), m = utf8(method);
  return bytes(proxy_invoke_service(ptr(i), i.byteLength, ptr(m), m.byteLength, ptr(param), param.byteLength, RETURNED, RETURNED + 4));
}

/** The ABI's header-map layout: count, (key size, value size) per pair, then NUL-terminated keys and values. */
export function decodePairs(raw: ArrayBuffer): Map<string, string> {
  const out = new Map<string, string>();
  const base = changetype<usize>(raw);
  const count = load<u32>(base);
  let data = base + 4 + 8 * count;
  for (let i: u32 = 0; i < count; i++) {
    const keySize = load<u32>(base + 4 + 8 * i);
    const valueSize = load<u32>(base + 8 + 8 * i);
    const key = String.UTF8.decodeUnsafe(data, keySize);
    const value = String.UTF8.decodeUnsafe(data + keySize + 1, valueSize);
    out.set(key, value);
    data += keySize + 1 + valueSize + 1;
  }
  return out;
}
