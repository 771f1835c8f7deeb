// The tests' AssemblyScript function, written with the helper: one call of each block.
export * from "./layotto";
import {
  appendResponse, getConfiguration, getSecret, getState, invokeService, nextId, onRequest, publishEvent,
  registerId, requestHeader, saveState, tryLock, unlock, lastResult,
} from "./layotto";

export function proxy_get_id(): void {
  registerId("as_fn");
}

function text(buffer: ArrayBuffer | null): string {
  return buffer == null ? `<${lastResult}>` : String.UTF8.decode(buffer);
}

onRequest((body: ArrayBuffer): bool => {
  // Called by another function (with no `op` header): echo, as the WAT guests do.
  if (requestHeader("op") == null) {
    appendResponse(String.UTF8.decode(body));
    return true;
  }
  saveState("state_demo", "as-key", body);
  appendResponse(`got=${text(getState("state_demo", "as-key"))}`);
  appendResponse(` id=${nextId("seq", "as").toString()}`);
  appendResponse(` locked=${tryLock("lk", "as-lock", "as", 10)} again=${tryLock("lk", "as-lock", "other", 10)}`);
  appendResponse(` unlocked=${unlock("lk", "as-lock", "as")}`);
  appendResponse(` published=${publishEvent("ps", "as-topic", body, "text/plain")}`);
  appendResponse(` config=${text(getConfiguration("cfg", "missing"))}`);
  const secret = getSecret("env", "DB");
  appendResponse(` secret=${secret == null ? "<none>" : secret.get("DB")}`);
  appendResponse(` echoed=${text(invokeService("as_fn", "", String.UTF8.encode("hi")))}`);
  return true;
});
