// The session list: one link per session with its name, status,
// participants, whether the avatar speaks, open alerts, held responses
// and who holds it; filterable by text and status. Rows update in place.
import { KeyedList, h, setAttr, setClass, setText } from '../shared/dom.js';
import type { SessionWatch } from './watch.js';

export class SessionList {
  readonly root: HTMLElement;
  private readonly filterInput = h('input', { id: 'session-filter', type: 'search', autocomplete: 'off', placeholder: 'name, status or id' });
  private readonly statusSelect = h(
    'select',
    { id: 'status-filter' },
    ...['all', 'live', 'created', 'starting', 'active', 'paused', 'stopping', 'stopped', 'failed'].map((s) => h('option', { value: s }, s === 'all' ? 'All' : s === 'live' ? 'Live (not ended)' : s)),
  );
  private readonly alertsOnly = h('input', { id: 'alerts-only', type: 'checkbox' });
  private readonly list = h('ul', { class: 'session-list', id: 'session-list' });
  private readonly count = h('p', { class: 'count', role: 'status' });
  private readonly rows: KeyedList<SessionWatch>;
  private readonly revs = new WeakMap<HTMLElement, number>();
  private focused: string | null = null;

  constructor(private readonly onFilter: () => void) {
    this.rows = new KeyedList<SessionWatch>(
      this.list,
      (w) => w.id,
      (w) =>
        h(
          'li',
          null,
          h(
            'a',
            { href: `#/s/${w.id}`, class: 'row' },
            h('span', { class: 'name' }),
            h('span', { class: 'badge' }),
            h('span', { class: 'speaking', role: 'img' }),
            h('span', { class: 'people' }),
            h('span', { class: 'alerts-n' }),
            h('span', { class: 'held-n' }),
            h('span', { class: 'ctl' }),
          ),
        ),
      (li, w) => this.renderRow(li, w),
    );
    this.root = h(
      'nav',
      { class: 'sessions', 'aria-labelledby': 'sessions-h' },
      h('h2', { id: 'sessions-h' }, 'Sessions'),
      h('div', { class: 'field' }, h('label', { for: 'session-filter' }, 'Filter sessions'), this.filterInput),
      h('div', { class: 'field inline' }, h('label', { for: 'status-filter' }, 'Status'), this.statusSelect),
      h('div', { class: 'field inline' }, this.alertsOnly, h('label', { for: 'alerts-only' }, 'Only sessions with alerts')),
      this.count,
      this.list,
    );
    this.statusSelect.value = 'live';
    for (const el of [this.filterInput, this.statusSelect, this.alertsOnly]) el.addEventListener('input', () => this.onFilter());
  }

  setFocused(id: string | null): void {
    this.focused = id;
  }

  render(watches: readonly SessionWatch[]): void {
    const text = this.filterInput.value.trim().toLowerCase();
    const status = this.statusSelect.value;
    const alertsOnly = this.alertsOnly.checked;
    const shown = watches.filter((w) => {
      const st = w.view.ready ? w.view.status : w.summary.status;
      if (status === 'live' && (st === 'stopped' || st === 'failed')) return false;
      if (status !== 'all' && status !== 'live' && st !== status) return false;
      if (alertsOnly && w.alerts.length === 0 && w.summary.open_alerts === 0) return false;
      if (text && !`${w.name} ${st} ${w.id}`.toLowerCase().includes(text)) return false;
      return true;
    });
    this.rows.render(shown);
    setText(this.count, shown.length === watches.length ? `${watches.length} session${watches.length === 1 ? '' : 's'}` : `${shown.length} of ${watches.length} sessions`);
  }

  private renderRow(li: HTMLElement, w: SessionWatch): void {
    const a = li.firstElementChild as HTMLAnchorElement;
    setAttr(a, 'aria-current', w.id === this.focused ? 'page' : null);
    // Rows repaint only when their session changed.
    const key = w.rev * 2 + (w.id === this.focused ? 1 : 0);
    if (this.revs.get(li) === key) return;
    this.revs.set(li, key);
    const [name, badge, speaking, people, alerts, held, ctl] = a.children as unknown as HTMLElement[] as [HTMLElement, HTMLElement, HTMLElement, HTMLElement, HTMLElement, HTMLElement, HTMLElement];
    const v = w.view;
    const status = v.ready ? v.status : w.summary.status;
    const isSpeaking = v.ready ? v.state.is_speaking : w.summary.is_speaking;
    const participants = v.ready ? v.participantCount : w.summary.participant_count;
    const nAlerts = v.ready ? w.alerts.length : w.summary.open_alerts;
    const nHeld = v.ready ? v.heldResponses.length : 0;
    const controller = w.controller;
    setText(name, w.name);
    setText(badge, status);
    setAttr(badge, 'data-status', status);
    setClass(speaking, 'on', isSpeaking);
    setAttr(speaking, 'aria-label', isSpeaking ? 'speaking' : 'silent');
    setText(people, `${participants} participant${participants === 1 ? '' : 's'}`);
    setText(alerts, nAlerts > 0 ? `${nAlerts} alert${nAlerts === 1 ? '' : 's'}` : '');
    setClass(li, 'has-alerts', nAlerts > 0);
    setText(held, nHeld > 0 ? `${nHeld} held` : '');
    setText(ctl, controller ? `held by ${controller}` : '');
  }
}
