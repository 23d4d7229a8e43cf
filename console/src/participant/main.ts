// The participant page (/s/{session_id}): the current slide, whether the
// avatar is speaking, its words as they are said, the answers as they
// arrive, and a box to ask a question.
//
// The token comes from the URL fragment (`#token=...`, which never reaches
// a server), from this tab's storage after a reload, or, on a `--dev` hub,
// is made up (`dev:participant:guest-<random>`); otherwise the page asks
// for one. Answers are kept by the hub's ids, so a reconnect (a hub
// restart included) neither loses nor repeats one. The page joins with
// compact event frames: it never shows an event's time, the one thing they
// leave out, and a session's many participants get fewer bytes each.
import './participant.css';
import { EvaClient, HubError, type ConnectionStatus, type SessionView } from '@eva-hub/client';
import { KeyedList, byId, frameScheduler, h, setAttr, setClass, setDisabled, setHidden, setText } from '../shared/dom.js';
import { closedReason, describeStatus, errorWords, hubUrl, loadConfig } from '../shared/hub.js';

interface Answer {
  id: string;
  text: string;
  /** The question it answers, if it was asked here. */
  mine: string | null;
  corrections: string[];
  rev: number;
}

interface Mine {
  /** The hub's question id once stored, else a local one. */
  key: string;
  questionId: string | null;
  text: string;
  state: 'sending' | 'stored' | 'answered' | 'failed';
  error?: string;
}

/** Answers kept on the page (the oldest go first). */
const ANSWERS_MAX = 200;
const sessionId = decodeURIComponent(location.pathname.split('/').filter(Boolean).pop() ?? '');
const storageKey = `eva-participant-${sessionId}`;

const conn = byId('conn');
const title = byId('title');
const statusEl = byId('status');
const slideNo = byId('slide-no');
const slideTopic = byId('slide-topic');
const speaking = byId('speaking');
const speakingText = byId('speaking-text');
const caption = byId('caption');
const answersEl = byId('answers');
const answersEmpty = byId('answers-empty');
const form = byId<HTMLFormElement>('ask-form');
const questionInput = byId<HTMLInputElement>('question');
const askBtn = byId<HTMLButtonElement>('ask');
const askNote = byId('ask-note');
const mineEl = byId('mine');
const problem = byId('problem');
const tokenForm = byId<HTMLFormElement>('token-form');
const tokenInput = byId<HTMLInputElement>('token');
const stage = byId('stage');

const answers = new Map<string, Answer>();
const mine: Mine[] = [];
let localIds = 0;
let session: ReturnType<EvaClient['join']> | null = null;
let client: EvaClient | null = null;
let transcript = '';
let ended = false;

const answerList = new KeyedList<Answer>(
  answersEl,
  (a) => a.id,
  () => h('li', null, h('p', { class: 'q' }), h('p', { class: 'a' }), h('ul', { class: 'corrections' })),
  (el, a) => {
    if (el.dataset['rev'] === String(a.rev)) return;
    el.dataset['rev'] = String(a.rev);
    const [q, text, corr] = el.children as unknown as [HTMLElement, HTMLElement, HTMLElement];
    setText(q, a.mine ? `You asked: ${a.mine}` : '');
    setHidden(q, a.mine === null);
    setText(text, a.text);
    corr.replaceChildren(...a.corrections.map((c) => h('li', null, h('strong', null, 'Correction: '), c)));
  },
);
const mineList = new KeyedList<Mine>(
  mineEl,
  (m) => m.key,
  () => h('li', null, h('span', { class: 'text' }), h('span', { class: 'state' })),
  (el, m) => {
    const [text, state] = el.children as unknown as [HTMLElement, HTMLElement];
    setText(text, m.text);
    const words = { sending: 'sending…', stored: 'waiting for an answer', answered: 'answered', failed: `not sent: ${m.error ?? 'error'}` };
    setText(state, words[m.state]);
    setAttr(el, 'data-state', m.state);
  },
);

const render = frameScheduler(() => {
  const v = session?.getState();
  if (v !== undefined) renderView(v);
  const list = [...answers.values()];
  const atBottom = answersEl.scrollHeight - answersEl.scrollTop - answersEl.clientHeight < 40;
  answerList.render(list);
  if (atBottom) answersEl.scrollTop = answersEl.scrollHeight;
  setHidden(answersEmpty, list.length > 0);
  mineList.render(mine);
  setHidden(mineEl, mine.length === 0);
});

function renderView(v: SessionView): void {
  if (!v.ready) return;
  const name = v.name ?? 'Live presentation';
  setText(title, name);
  if (document.title !== name) document.title = `${name} · live`;
  const words: Record<string, string> = { created: 'Starting soon', starting: 'Starting', active: 'Live', paused: 'Paused', stopping: 'Ending', stopped: 'Ended', failed: 'Interrupted' };
  setText(statusEl, words[v.status] ?? v.status);
  setAttr(statusEl, 'data-status', v.status);
  setText(slideNo, `Slide ${v.state.current_slide + 1}`);
  setAttr(slideNo, 'data-slide', String(v.state.current_slide));
  setText(slideTopic, v.state.current_topic ?? '');
  setClass(speaking, 'on', v.state.is_speaking);
  setText(speakingText, v.state.is_speaking ? 'Eva is speaking' : v.status === 'active' ? 'Eva is listening' : 'Eva is quiet');
  setText(caption, transcript);
  setClass(caption, 'quiet', !v.state.is_speaking);
  const over = v.status === 'stopped' || v.status === 'failed';
  setDisabled(askBtn, over || ended);
  setDisabled(questionInput, over || ended);
}

function onConnection(s: ConnectionStatus): void {
  setText(conn, describeStatus(s));
  setAttr(conn, 'data-state', s.state);
  if (s.state === 'closed') {
    if (s.closeCode === 4505) {
      ended = true;
      showProblem('This session has ended. Thank you for attending.');
    } else if (s.closeCode === 4501 || s.closeCode === 4502 || s.closeCode === 4503) {
      sessionStorage.removeItem(storageKey);
      showProblem(`Your access link is not valid: ${closedReason(s)}. Ask the organiser for a new link.`, true);
    } else {
      showProblem(`Disconnected: ${closedReason(s)}. Reload the page to try again.`);
    }
    render();
  } else if (s.state === 'reconnecting' && s.closeCode === 4002) {
    client?.close();
    sessionStorage.removeItem(storageKey);
    showProblem('Your access link has expired. Ask the organiser for a new one, or paste a fresh token below.', true);
  }
}

function showProblem(text: string, askToken = false): void {
  setText(problem, text);
  setHidden(tokenForm, !askToken);
}

function start(token: string): void {
  sessionStorage.setItem(storageKey, token);
  showProblem('');
  const name = sessionStorage.getItem(`${storageKey}-name`) ?? undefined;
  client = new EvaClient({ url: hubUrl(), token, compact: true, reconnect: { minDelayMs: 200, maxDelayMs: 5000 } });
  client.on('connection', onConnection);
  session = client.join(sessionId, name ? { name } : {});
  session.subscribe(render);
  session.on('event:response', (r) => {
    const asked = r.question_id ? mine.find((m) => m.questionId === r.question_id) : undefined;
    if (asked) asked.state = 'answered';
    if (!answers.has(r.response_id)) {
      answers.set(r.response_id, { id: r.response_id, text: r.text, mine: asked?.text ?? null, corrections: [], rev: 0 });
      if (answers.size > ANSWERS_MAX) answers.delete(answers.keys().next().value as string);
    }
    render();
  });
  session.on('event:correction', (c) => {
    const a = answers.get(c.response_id);
    if (a !== undefined && !a.corrections.includes(c.text)) {
      a.corrections.push(c.text);
      a.rev += 1;
      render();
    }
  });
  session.onCustom<{ text?: string }>('transcript', (d) => {
    if (typeof d?.text === 'string') {
      transcript = d.text;
      render();
    }
  });
  session.on('left', (err) => {
    if (err instanceof HubError && err.code === 'not_found') {
      ended = true;
      showProblem('There is no such session (or your link does not allow it). Check the link you were given.');
    } else if (err instanceof HubError && err.code === 'session_ended') {
      ended = true;
      showProblem('This session has ended. Thank you for attending.');
    }
    render();
  });
}

form.addEventListener('submit', (ev) => {
  ev.preventDefault();
  const text = questionInput.value.trim();
  if (session === null || text === '') {
    setText(askNote, 'Type your question first.');
    return;
  }
  localIds += 1;
  const m: Mine = { key: `local-${localIds}`, questionId: null, text, state: 'sending' };
  mine.push(m);
  if (mine.length > 50) mine.shift();
  questionInput.value = '';
  setText(askNote, 'Sending…');
  render();
  session.ask(text).then(
    (ack) => {
      m.questionId = ack.ref_id ?? null;
      if (m.state === 'sending') m.state = 'stored';
      setText(askNote, 'Received: Eva will answer shortly.');
      render();
    },
    (err: unknown) => {
      m.state = 'failed';
      m.error = errorWords(err);
      setText(askNote, `Your question was not sent: ${m.error}.`);
      render();
    },
  );
});

tokenForm.addEventListener('submit', (ev) => {
  ev.preventDefault();
  const t = tokenInput.value.trim();
  if (t === '') return;
  client?.close();
  start(t);
});

async function main(): Promise<void> {
  if (!/^[0-9a-fA-F-]{36}$/.test(sessionId)) {
    showProblem('This link does not name a session.');
    setHidden(stage, true);
    return;
  }
  const fragment = new URLSearchParams(location.hash.slice(1));
  const fromLink = fragment.get('token');
  if (fromLink) {
    // Keep it out of the address bar and history.
    history.replaceState(null, '', location.pathname);
    start(fromLink);
    return;
  }
  const saved = sessionStorage.getItem(storageKey);
  if (saved) {
    start(saved);
    return;
  }
  const config = await loadConfig();
  if (config.dev) {
    const n = Math.floor(Math.random() * 9000 + 1000);
    sessionStorage.setItem(`${storageKey}-name`, `Guest ${n}`);
    start(`dev:participant:guest-${n}-${Math.random().toString(36).slice(2, 8)}`);
    return;
  }
  setText(conn, 'Not connected');
  showProblem('This page needs an access token: open the link you were given, or paste the token here.', true);
}

void main();
