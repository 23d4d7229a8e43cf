// The focused session: what the avatar is doing, the live conversation,
// the question queue, held responses, alerts, latency, presence, and the
// operator's interventions. Built once; `render` touches only what
// changed since the last call.
import type { Alert, ResponseBody } from '@eva-hub/client';
import { KeyedList, ago, clock, h, setAttr, setClass, setDisabled, setHidden, setText } from '../shared/dom.js';
import { errorWords } from '../shared/hub.js';
import { LatencyChart } from './chart.js';
import type { Line, SessionWatch } from './watch.js';

/** Conversation lines kept in the page (the watch keeps more). */
const LINES_SHOWN = 200;

interface QueueItem {
  key: string;
  text: string;
  count: number;
  who: string[];
  since: number;
}

export class SessionPanel {
  readonly root: HTMLElement;
  private watch: SessionWatch | null = null;
  private me: string | undefined;
  private readonly chart: LatencyChart;
  private linesRev = -1;
  private rev = -1;

  // header
  private readonly title = h('h2', { id: 'session-title', tabindex: '-1' });
  private readonly status = h('span', { class: 'badge' });
  private readonly slide = h('span');
  private readonly mode = h('span');
  private readonly speaking = h('span', { class: 'speaking', role: 'img' });
  private readonly speakingText = h('span');
  private readonly renderer = h('span');
  private readonly participantLink = h('a', { target: '_blank', rel: 'noopener' }, 'Open participant page');
  private readonly transcript = h('p', { class: 'transcript' });
  // control
  private readonly holder = h('p', { class: 'holder' });
  private readonly takeBtn = h('button', { type: 'button', class: 'primary' }, 'Take over');
  private readonly releaseBtn = h('button', { type: 'button' }, 'Release');
  private readonly pauseBtn = h('button', { type: 'button' }, 'Pause');
  private readonly resumeBtn = h('button', { type: 'button' }, 'Resume');
  private readonly prevBtn = h('button', { type: 'button' }, 'Previous slide');
  private readonly nextBtn = h('button', { type: 'button' }, 'Next slide');
  private readonly controlNote = h('p', { class: 'note', role: 'status' });
  private readonly sayText = h('textarea', { id: 'say-text', rows: 2, maxlength: 2000 });
  private readonly sayBtn = h('button', { type: 'button' }, 'Say');
  // emergency
  private readonly stopBtn = h('button', { type: 'button', class: 'danger', id: 'emergency-stop' }, 'Emergency stop');
  private readonly stopReason = h('input', { id: 'stop-reason', type: 'text', maxlength: 200, placeholder: 'optional' });
  private readonly stopStatus = h('p', { class: 'stop-status', id: 'stop-status', role: 'status', 'aria-live': 'assertive' });
  // suggestion, correction
  private readonly suggestText = h('textarea', { id: 'suggest-text', rows: 2, maxlength: 2000 });
  private readonly suggestBtn = h('button', { type: 'button' }, 'Send suggestion');
  private readonly suggestNote = h('p', { class: 'note', role: 'status' });
  private readonly correctTarget = h('select', { id: 'correct-target' });
  private readonly correctText = h('textarea', { id: 'correct-text', rows: 2, maxlength: 2000 });
  private readonly correctBtn = h('button', { type: 'button' }, 'Send correction');
  private readonly correctNote = h('p', { class: 'note', role: 'status' });
  // lists
  private readonly log = h('ol', { class: 'conversation', id: 'conversation', role: 'log', 'aria-live': 'polite', 'aria-label': 'Conversation' });
  private readonly logEmpty = h('p', { class: 'empty' }, 'Nothing said yet. Questions, answers and interventions appear here as they happen.');
  private readonly queue = h('ol', { class: 'queue', id: 'question-queue' });
  private readonly queueEmpty = h('p', { class: 'empty' }, 'No open questions.');
  private readonly held = h('ol', { class: 'held-list', id: 'held-responses' });
  private readonly heldEmpty = h('p', { class: 'empty' }, 'No responses awaiting approval. Take over to review the avatar’s answers before they are published.');
  private readonly alerts = h('ul', { class: 'alerts', id: 'alerts' });
  private readonly alertsEmpty = h('p', { class: 'empty' }, 'No open alerts.');
  private readonly members = h('ul', { class: 'members' });
  private readonly presenceCount = h('p');
  private readonly latencyNow = h('p', { class: 'latency-now' });
  private readonly lineList: KeyedList<Line>;
  private readonly queueList: KeyedList<QueueItem>;
  private readonly heldList: KeyedList<ResponseBody>;
  private readonly alertList: KeyedList<Alert>;
  private correctOptionsKey = '';
  /** The operator chose a response to correct (else the newest is offered). */
  private correctPicked = false;

  constructor(private readonly announce: (text: string) => void) {
    const chartBox = h('div', { class: 'chart', 'aria-hidden': 'true' });
    this.chart = new LatencyChart(chartBox);
    const section = (id: string, title: string, ...children: (Node | null)[]) =>
      h('section', { class: `card ${id}`, 'aria-labelledby': `${id}-h` }, h('h3', { id: `${id}-h` }, title), ...children);
    const field = (label: string, control: HTMLElement) => h('div', { class: 'field' }, h('label', { for: control.id }, label), control);

    this.root = h(
      'article',
      { class: 'session', id: 'session-view', 'aria-labelledby': 'session-title' },
      h(
        'header',
        { class: 'session-head' },
        this.title,
        h('p', { class: 'facts' }, this.status, this.slide, this.mode, h('span', { class: 'speaking-box' }, this.speaking, this.speakingText), this.renderer, this.participantLink),
        h('div', { class: 'now-saying' }, h('span', { class: 'label' }, 'Now saying'), this.transcript),
      ),
      h(
        'div',
        { class: 'columns' },
        h(
          'div',
          { class: 'col-main' },
          section('conv', 'Live conversation', this.log, this.logEmpty),
          section('queue', 'Question queue', this.queue, this.queueEmpty),
          section('latency', 'Latency by stage', chartBox, this.latencyNow),
        ),
        h(
          'div',
          { class: 'col-side' },
          section(
            'control',
            'Interventions',
            this.holder,
            h('div', { class: 'buttons' }, this.takeBtn, this.releaseBtn),
            h('div', { class: 'buttons' }, this.pauseBtn, this.resumeBtn, this.prevBtn, this.nextBtn),
            field('Say as the avatar (while you hold the session)', this.sayText),
            h('div', { class: 'buttons' }, this.sayBtn),
            this.controlNote,
            h('hr'),
            field('Suggestion for the avatar', this.suggestText),
            h('div', { class: 'buttons' }, this.suggestBtn),
            this.suggestNote,
            h('hr'),
            field('Response to correct', this.correctTarget),
            field('Correction', this.correctText),
            h('div', { class: 'buttons' }, this.correctBtn),
            this.correctNote,
          ),
          section('stop', 'Emergency stop', field('Reason', this.stopReason), h('div', { class: 'buttons' }, this.stopBtn), this.stopStatus),
          section('heldsec', 'Held responses', this.held, this.heldEmpty),
          section('alertsec', 'Alerts', this.alerts, this.alertsEmpty),
          section('presence', 'Presence', this.presenceCount, this.members),
        ),
      ),
    );

    this.lineList = new KeyedList<Line>(
      this.log,
      (l) => l.id,
      () => h('li', null, h('span', { class: 'who' }), h('span', { class: 'text' }), h('span', { class: 'meta' })),
      (el, l) => this.renderLine(el, l),
    );
    this.queueList = new KeyedList<QueueItem>(
      this.queue,
      (q) => q.key,
      () => h('li', null, h('span', { class: 'count' }), h('span', { class: 'text' }), h('span', { class: 'meta' })),
      (el, q) => {
        const [count, text, meta] = el.children as unknown as [HTMLElement, HTMLElement, HTMLElement];
        setText(count, q.count > 1 ? `×${q.count}` : '');
        setAttr(count, 'aria-label', q.count > 1 ? `asked ${q.count} times` : null);
        setText(text, q.text);
        setText(meta, `${q.who.slice(0, 3).join(', ')}${q.who.length > 3 ? '…' : ''} · waiting ${ago(q.since)}`);
      },
    );
    this.heldList = new KeyedList<ResponseBody>(
      this.held,
      (r) => r.response_id,
      (r) => {
        const approve = h('button', { type: 'button', class: 'primary' }, 'Approve');
        approve.addEventListener('click', () => void this.approve(r.response_id, approve));
        return h('li', null, h('p', { class: 'q' }), h('p', { class: 'text' }), h('div', { class: 'buttons' }, approve));
      },
      (el, r) => {
        const [q, text, buttons] = el.children as unknown as [HTMLElement, HTMLElement, HTMLElement];
        const question = r.question_id ? this.watch?.lines.get(r.question_id) : undefined;
        setText(q, question ? `Answer to “${question.text}” (${question.who ?? 'participant'})` : 'Answer');
        setText(text, r.text);
        const btn = buttons.firstElementChild as HTMLButtonElement;
        const mine = this.watch !== null && this.watch.controller === this.me;
        setDisabled(btn, !mine);
        setAttr(btn, 'title', mine ? null : 'Take over the session to approve');
      },
    );
    this.alertList = new KeyedList<Alert>(
      this.alerts,
      (a) => a.alert_id,
      (a) => {
        const ack = h('button', { type: 'button', 'aria-describedby': `alert-${a.alert_id}` }, 'Acknowledge');
        ack.addEventListener('click', () => void this.ackAlert(a.alert_id, ack));
        return h('li', { class: `alert sev-${a.severity}` }, h('p', { class: 'title', id: `alert-${a.alert_id}` }), h('p', { class: 'text' }), ack);
      },
      (el, a) => {
        const [title, text] = el.children as unknown as [HTMLElement, HTMLElement];
        setText(title, `${a.severity.toUpperCase()}: ${a.title}`);
        setText(text, `${a.message} (${clock(a.created_at)})`);
      },
    );

    this.takeBtn.addEventListener('click', () => void this.act(this.controlNote, 'Taken over: the avatar’s own answers are held for your approval.', (w) => w.handle.takeover('operator console')));
    this.releaseBtn.addEventListener('click', () => void this.act(this.controlNote, 'Released: the avatar answers on its own again.', (w) => w.handle.release()));
    this.pauseBtn.addEventListener('click', () => void this.act(this.controlNote, 'Paused.', (w) => w.handle.command({ action: 'pause' })));
    this.resumeBtn.addEventListener('click', () => void this.act(this.controlNote, 'Resumed.', (w) => w.handle.command({ action: 'resume' })));
    this.prevBtn.addEventListener('click', () => void this.act(this.controlNote, 'Slide changed.', (w) => w.handle.command({ action: 'goto_slide', slide: Math.max(0, w.view.state.current_slide - 1) })));
    this.nextBtn.addEventListener('click', () => void this.act(this.controlNote, 'Slide changed.', (w) => w.handle.command({ action: 'goto_slide', slide: w.view.state.current_slide + 1 })));
    this.sayBtn.addEventListener('click', () => {
      const text = this.sayText.value.trim();
      if (text === '') return this.note(this.controlNote, 'Type what the avatar should say first.');
      void this.act(this.controlNote, 'Sent to the avatar.', (w) => w.handle.command({ action: 'say', text }), () => (this.sayText.value = ''));
    });
    this.suggestBtn.addEventListener('click', () => {
      const text = this.suggestText.value.trim();
      if (text === '') return this.note(this.suggestNote, 'Type a suggestion first.');
      void this.act(this.suggestNote, 'Suggestion sent to the avatar.', (w) => w.handle.suggest(text), () => (this.suggestText.value = ''));
    });
    this.correctBtn.addEventListener('click', () => {
      const text = this.correctText.value.trim();
      const target = this.correctTarget.value;
      if (target === '') return this.note(this.correctNote, 'There is no response to correct yet.');
      if (text === '') return this.note(this.correctNote, 'Type the correction first.');
      void this.act(this.correctNote, 'Correction published to everyone.', (w) => w.handle.correct(target, text), () => (this.correctText.value = ''));
    });
    this.correctTarget.addEventListener('change', () => (this.correctPicked = true));
    this.stopBtn.addEventListener('click', () => {
      const w = this.watch;
      if (w === null) return;
      w.emergencyStop(this.stopReason.value.trim() || 'operator console').catch(() => undefined);
    });
  }

  /** Shows another session (or the same one again). */
  focus(watch: SessionWatch | null, me: string | undefined): void {
    if (watch !== this.watch) {
      this.watch = watch;
      this.linesRev = -1;
      this.rev = -1;
      this.correctOptionsKey = '';
      this.correctPicked = false;
      for (const n of [this.controlNote, this.suggestNote, this.correctNote]) setText(n, '');
    }
    this.me = me;
  }

  /** Brings the page up to date with the focused session. */
  render(): void {
    const w = this.watch;
    if (w === null || w.rev === this.rev) return;
    this.rev = w.rev;
    const v = w.view;
    setText(this.title, w.name);
    setText(this.status, v.ready ? v.status : w.gone ? 'unavailable' : 'joining…');
    setAttr(this.status, 'data-status', v.status);
    setText(this.slide, `Slide ${v.state.current_slide + 1}${v.state.current_topic ? ` · ${v.state.current_topic}` : ''}`);
    setAttr(this.slide, 'data-slide', String(v.state.current_slide));
    this.slide.id = 'current-slide';
    setText(this.mode, `Mode: ${v.state.presentation_mode || 'auto'}`);
    setClass(this.speaking, 'on', v.state.is_speaking);
    setAttr(this.speaking, 'aria-label', v.state.is_speaking ? 'speaking' : 'silent');
    setText(this.speakingText, v.state.is_speaking ? 'Speaking' : 'Silent');
    const rc = v.control?.renderer_connected ?? w.summary.renderer_connected;
    setText(this.renderer, rc ? 'Renderer connected' : 'No renderer');
    setClass(this.renderer, 'warn', !rc);
    setAttr(this.participantLink, 'href', `/s/${w.id}`);
    setText(this.transcript, w.transcript && v.state.is_speaking ? w.transcript.text : w.transcript ? `${w.transcript.text}` : '—');
    setClass(this.transcript, 'quiet', !v.state.is_speaking);

    this.renderControl(w);
    this.renderStop(w);

    if (w.linesRev !== this.linesRev) {
      this.linesRev = w.linesRev;
      const lines = w.conversation();
      const shown = lines.length > LINES_SHOWN ? lines.slice(lines.length - LINES_SHOWN) : lines;
      const atBottom = this.log.scrollHeight - this.log.scrollTop - this.log.clientHeight < 40;
      this.lineList.render(shown);
      if (atBottom) this.log.scrollTop = this.log.scrollHeight;
      setHidden(this.logEmpty, shown.length > 0);
      this.renderCorrectOptions(lines);
    }
    // The queue: open questions, the same text asked several times once.
    const groups = new Map<string, QueueItem>();
    for (const q of w.open.values()) {
      const key = q.text.trim().toLowerCase().replace(/[^\p{L}\p{N}]+/gu, ' ').trim();
      const g = groups.get(key);
      if (g === undefined) groups.set(key, { key, text: q.text, count: 1, who: [q.who], since: q.askedAt });
      else {
        g.count += 1;
        g.who.push(q.who);
        g.since = Math.min(g.since, q.askedAt);
      }
    }
    const queue = [...groups.values()].sort((a, b) => b.count - a.count || a.since - b.since);
    this.queueList.render(queue);
    setHidden(this.queueEmpty, queue.length > 0);

    this.heldList.render(v.heldResponses);
    setHidden(this.heldEmpty, v.heldResponses.length > 0);
    this.alertList.render(w.alerts);
    setHidden(this.alertsEmpty, w.alerts.length > 0);

    setText(this.presenceCount, `${v.participantCount} participant${v.participantCount === 1 ? '' : 's'}; present now:`);
    const members = (v.members ?? []).slice(0, 50);
    const key = members.map((m) => `${m.role}:${m.id}:${m.name ?? ''}`).join('|');
    if (this.members.dataset['key'] !== key) {
      this.members.dataset['key'] = key;
      this.members.replaceChildren(...members.map((m) => h('li', null, `${m.name ?? m.id}`, h('span', { class: 'role' }, m.role))));
    }

    this.chart.show(w.metrics);
    const m = v.metrics;
    const s = m?.stages;
    const ms = (x: number | null | undefined) => (x === null || x === undefined ? '–' : `${Math.round(x)} ms`);
    setText(
      this.latencyNow,
      m ? `Now: STT ${ms(s?.stt_ms)}, LLM ${ms(s?.llm_ms)}, TTS ${ms(s?.tts_ms)}, end to end ${ms(s?.total_ms)}; ${m.fps ?? '–'} fps, CPU ${pct(m.cpu_usage)}, GPU ${pct(m.gpu_usage)}` : 'No metrics reported yet.',
    );
  }

  private renderControl(w: SessionWatch): void {
    const controller = w.controller;
    const mine = controller !== null && controller === this.me;
    setText(this.holder, controller === null ? 'Autonomous: the avatar answers on its own.' : mine ? `You (${this.me}) hold the session: the avatar’s own answers wait for your approval.` : `Held by ${controller}.`);
    setAttr(this.holder, 'data-controller', controller);
    const ended = w.view.status === 'stopped' || w.view.status === 'failed';
    setDisabled(this.takeBtn, controller !== null || ended);
    setAttr(this.takeBtn, 'title', controller !== null && !mine ? `Held by ${controller}` : null);
    setDisabled(this.releaseBtn, !mine);
    for (const b of [this.pauseBtn, this.resumeBtn, this.prevBtn, this.nextBtn, this.sayBtn]) setDisabled(b, !mine || ended);
    setHidden(this.pauseBtn, w.view.status === 'paused');
    setHidden(this.resumeBtn, w.view.status !== 'paused');
  }

  private renderStop(w: SessionWatch): void {
    const s = w.stop;
    let text = '';
    if (s !== null) {
      const who = s.mine ? '' : ` (by ${s.operatorId ?? 'another operator'})`;
      switch (s.state) {
        case 'sending':
          text = 'Emergency stop: sending…';
          break;
        case 'sent':
          text = `Emergency stop sent${who}: waiting for the renderer to confirm…`;
          break;
        case 'acknowledged':
          text = `Emergency stop sent and acknowledged by the renderer in ${s.latencyMs ?? '?'} ms${who}.`;
          break;
        case 'unacknowledged':
          text = `Emergency stop escalated${who}: no acknowledgement from the renderer within ${s.timeoutMs ?? 2000} ms. A critical alert was raised.`;
          break;
        case 'failed':
          text = `Emergency stop could not be sent: ${s.error ?? 'unknown error'}. Try again.`;
          break;
      }
    }
    setText(this.stopStatus, text);
    setAttr(this.stopStatus, 'data-state', s?.state ?? null);
    setDisabled(this.stopBtn, s?.state === 'sending' || w.view.status === 'stopped' || w.view.status === 'failed');
  }

  private renderLine(el: HTMLElement, l: Line): void {
    if (el.dataset['rev'] === String(l.rev) && el.dataset['kind'] === l.kind) return;
    el.dataset['rev'] = String(l.rev);
    el.dataset['kind'] = l.kind;
    el.className = `line ${l.kind}${l.fate ? ` ${l.fate}` : ''}`;
    const [who, text, meta] = el.children as unknown as [HTMLElement, HTMLElement, HTMLElement];
    const labels: Record<string, string> = {
      question: l.who ?? 'Participant',
      response: 'Avatar',
      say: 'Avatar (operator)',
      held: 'Avatar (held)',
      correction: `Correction by ${l.who ?? 'operator'}`,
      suggestion: `Suggestion by ${l.who ?? 'operator'}`,
      system: '',
    };
    setText(who, labels[l.kind] ?? '');
    setText(text, l.text);
    const bits = [clock(l.ts)];
    if (l.confidence !== undefined) bits.push(`confidence ${Math.round(l.confidence * 100)}%`);
    if (l.responseTimeMs) bits.push(`${l.responseTimeMs} ms`);
    if (l.kind === 'held') bits.push(l.fate === 'discarded' ? 'discarded at release' : 'awaiting approval');
    if (l.fate === 'approved') bits.push('approved');
    setText(meta, bits.join(' · '));
  }

  private renderCorrectOptions(lines: Line[]): void {
    const responses = lines.filter((l) => l.kind === 'response' || l.kind === 'say').slice(-15).reverse();
    const key = responses.map((r) => r.id).join(',');
    if (key === this.correctOptionsKey) return;
    this.correctOptionsKey = key;
    const selected = this.correctTarget.value;
    this.correctTarget.replaceChildren(...responses.map((r) => h('option', { value: r.id }, `${clock(r.ts)}: ${r.text.length > 70 ? `${r.text.slice(0, 70)}…` : r.text}`)));
    if (this.correctPicked && responses.some((r) => r.id === selected)) this.correctTarget.value = selected;
    else this.correctPicked = false;
    setDisabled(this.correctBtn, responses.length === 0);
  }

  private async approve(responseId: string, btn: HTMLButtonElement): Promise<void> {
    const w = this.watch;
    if (w === null) return;
    setDisabled(btn, true);
    try {
      await w.handle.approve(responseId);
      this.announce('Response approved and published.');
    } catch (err) {
      setDisabled(btn, false);
      this.announce(`Could not approve: ${errorWords(err)}`);
    }
  }

  private async ackAlert(alertId: string, btn: HTMLButtonElement): Promise<void> {
    const w = this.watch;
    if (w === null) return;
    setDisabled(btn, true);
    try {
      await w.handle.ackAlert(alertId);
      this.announce('Alert acknowledged.');
    } catch (err) {
      setDisabled(btn, false);
      this.announce(`Could not acknowledge the alert: ${errorWords(err)}`);
    }
  }

  private note(el: HTMLElement, text: string): void {
    setText(el, text);
  }

  /** Runs an intervention and says how it went next to its buttons. */
  private async act(note: HTMLElement, done: string, fn: (w: SessionWatch) => Promise<unknown>, after?: () => void): Promise<void> {
    const w = this.watch;
    if (w === null) return;
    setText(note, 'Sending…');
    try {
      await fn(w);
      setText(note, done);
      after?.();
    } catch (err) {
      setText(note, `Not done: ${errorWords(err)}.`);
    }
  }
}

function pct(x: number | null | undefined): string {
  return x === null || x === undefined ? '–' : `${Math.round(x * 100)}%`;
}
