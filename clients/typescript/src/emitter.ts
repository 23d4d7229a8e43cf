// A small typed event emitter. Listeners run synchronously in the order
// they were added; one that throws does not stop the others or corrupt
// the SDK's state: its error is rethrown on a fresh microtask, where it
// surfaces like any uncaught error in the host.

export type Listener<A extends unknown[]> = (...args: A) => void;

export function reportListenerError(err: unknown): void {
  queueMicrotask(() => {
    throw err;
  });
}

export class Emitter<Events extends { [K in keyof Events]: unknown[] }> {
  // Arrays are replaced, not mutated, when listeners change, so an emit in
  // progress keeps iterating the list it started with.
  private readonly listeners = new Map<keyof Events, Listener<never[]>[]>();

  /** Adds a listener; returns a function that removes it. */
  on<K extends keyof Events>(name: K, fn: Listener<Events[K]>): () => void {
    const list = this.listeners.get(name) ?? [];
    this.listeners.set(name, [...list, fn as unknown as Listener<never[]>]);
    return () => this.off(name, fn);
  }

  /** Adds a listener that runs once. */
  once<K extends keyof Events>(name: K, fn: Listener<Events[K]>): () => void {
    const off = this.on(name, ((...args: Events[K]) => {
      off();
      fn(...args);
    }) as Listener<Events[K]>);
    return off;
  }

  off<K extends keyof Events>(name: K, fn: Listener<Events[K]>): void {
    const list = this.listeners.get(name);
    if (!list) return;
    const next = list.filter((l) => l !== (fn as unknown as Listener<never[]>));
    if (next.length > 0) this.listeners.set(name, next);
    else this.listeners.delete(name);
  }

  has<K extends keyof Events>(name: K): boolean {
    return this.listeners.has(name);
  }

  emit<K extends keyof Events>(name: K, ...args: Events[K]): void {
    const list = this.listeners.get(name);
    if (list === undefined) return;
    for (const fn of list) {
      try {
        (fn as unknown as Listener<Events[K]>)(...args);
      } catch (err) {
        reportListenerError(err);
      }
    }
  }
}
