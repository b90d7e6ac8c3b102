/**
 * One abort listener per signal, fanned out to every waiter: a long copy with many requests
 * and retry waits in flight on one signal would otherwise add a listener each and trip
 * Node's MaxListenersExceededWarning (issue 8).
 */
const waiters = new WeakMap<AbortSignal, { fns: Set<() => void>; listener: () => void }>();

/** Calls `fn` once when `signal` aborts; returns the function that unregisters it. */
export function onAbort(signal: AbortSignal, fn: () => void): () => void {
  if (signal.aborted) {
    queueMicrotask(fn);
    return () => {};
  }
  let entry = waiters.get(signal);
  if (!entry) {
    const fns = new Set<() => void>();
    const listener = () => {
      waiters.delete(signal);
      for (const f of fns) f();
    };
    entry = { fns, listener };
    waiters.set(signal, entry);
    signal.addEventListener("abort", listener, { once: true });
  }
  const e = entry;
  e.fns.add(fn);
  return () => {
    // The last waiter gone, the listener goes too: nothing stays on a long-lived signal.
    if (e.fns.delete(fn) && e.fns.size === 0 && waiters.get(signal) === e) {
      waiters.delete(signal);
      signal.removeEventListener("abort", e.listener);
    }
  };
}

/** The error an aborted signal stands for (its reason, else an AbortError). */
export function abortError(signal: AbortSignal): Error {
  return signal.reason instanceof Error
    ? signal.reason
    : Object.assign(new Error("The operation was aborted"), { name: "AbortError", code: "ABORT_ERR" });
}
