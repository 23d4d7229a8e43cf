// Small DOM helpers: building elements without innerHTML (the pages never
// parse markup from data), and updates that touch the DOM only when a
// value really changed, so a view can be "rendered" many times a second
// for the cost of a few comparisons.

type Child = Node | string | null | undefined | false;
type Props = Record<string, string | number | boolean | null | undefined | EventListener>;

/** `h('button', { type: 'button', onclick: fn }, 'Take over')`. */
export function h<K extends keyof HTMLElementTagNameMap>(tag: K, props?: Props | null, ...children: Child[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  if (props) {
    for (const [k, v] of Object.entries(props)) {
      if (v === null || v === undefined || v === false) continue;
      if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
      else if (k === 'class') el.className = String(v);
      else if (v === true) el.setAttribute(k, '');
      else el.setAttribute(k, String(v));
    }
  }
  for (const c of children) if (c !== null && c !== undefined && c !== false) el.append(c);
  return el;
}

/** Sets an element's text if it differs. */
export function setText(el: Element, text: string): void {
  if (el.textContent !== text) el.textContent = text;
}

/** Sets or removes an attribute if it differs (`null` removes). */
export function setAttr(el: Element, name: string, value: string | null): void {
  if (value === null) {
    if (el.hasAttribute(name)) el.removeAttribute(name);
  } else if (el.getAttribute(name) !== value) {
    el.setAttribute(name, value);
  }
}

export function setHidden(el: HTMLElement, hidden: boolean): void {
  if (el.hidden !== hidden) el.hidden = hidden;
}

export function setDisabled(el: HTMLButtonElement | HTMLInputElement | HTMLTextAreaElement | HTMLSelectElement, disabled: boolean): void {
  if (el.disabled !== disabled) el.disabled = disabled;
}

export function setClass(el: Element, name: string, on: boolean): void {
  if (el.classList.contains(name) !== on) el.classList.toggle(name, on);
}

/** The element with this id, or an error naming it (a page without it is a build bug). */
export function byId<T extends HTMLElement = HTMLElement>(id: string): T {
  const el = document.getElementById(id);
  if (el === null) throw new Error(`#${id} is missing from the page`);
  return el as T;
}

/**
 * Keeps a container's children in step with a list of keyed items:
 * creates what is new, updates what stays, removes what went, and keeps
 * the order. `update` runs on every render and should only touch what
 * changed.
 */
export class KeyedList<T> {
  private readonly nodes = new Map<string, HTMLElement>();

  constructor(
    private readonly container: HTMLElement,
    private readonly key: (item: T) => string,
    private readonly create: (item: T) => HTMLElement,
    private readonly update: (el: HTMLElement, item: T) => void,
  ) {}

  render(items: readonly T[]): void {
    const seen = new Set<string>();
    let prev: HTMLElement | null = null;
    for (const item of items) {
      const k = this.key(item);
      seen.add(k);
      let el = this.nodes.get(k);
      if (el === undefined) {
        el = this.create(item);
        this.nodes.set(k, el);
      }
      this.update(el, item);
      const want: ChildNode | null = prev === null ? this.container.firstChild : prev.nextSibling;
      if (want !== el) this.container.insertBefore(el, want);
      prev = el;
    }
    for (const [k, el] of this.nodes) {
      if (!seen.has(k)) {
        el.remove();
        this.nodes.delete(k);
      }
    }
  }

  get size(): number {
    return this.nodes.size;
  }
}

/** `12:04:31` in the browser's time zone. */
export function clock(ms: number): string {
  return new Date(ms).toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' });
}

/** `5 s`, `3 min`, `2 h` ago-style durations. */
export function ago(ms: number, now = Date.now()): string {
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 60) return `${s} s`;
  const m = Math.round(s / 60);
  if (m < 60) return `${m} min`;
  return `${Math.round(m / 60)} h`;
}

/**
 * Runs `fn` at most once per animation frame, however often it is asked
 * (or within 250 ms where frames do not come, as in a hidden tab).
 */
export function frameScheduler(fn: () => void): () => void {
  let queued = false;
  const run = (): void => {
    if (!queued) return;
    queued = false;
    fn();
  };
  return () => {
    if (queued) return;
    queued = true;
    requestAnimationFrame(run);
    setTimeout(run, 250);
  };
}
