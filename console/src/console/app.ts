// The operator console: sign in with a connection token, watch every
// session of the tenant, focus one and intervene.
//
// One SDK client joins every listed session (operators may join many), so
// the list is live, and asks for the list itself on the same connection
// (lister.ts). The console holds nothing but the token typed into it:
// what it may see and do is what that token allows.
import { EvaClient, type ConnectionStatus, type WelcomeFrame } from '@eva-hub/client';
import { byId, frameScheduler, setAttr, setHidden, setText } from '../shared/dom.js';
import { closedReason, describeStatus, hubUrl, type HubConfig } from '../shared/hub.js';
import { SessionList } from './list.js';
import { SessionLister } from './lister.js';
import { SessionPanel } from './view.js';
import { SessionWatch, type Summary } from './watch.js';

const TOKEN_KEY = 'eva-console-token';
/** Sessions joined at most (the list shows the newest). */
const WATCH_MAX = 200;

type TokenState = 'ok' | 'expired';

export class ConsoleApp {
  private client: EvaClient | null = null;
  private lister: SessionLister | null = null;
  private token = '';
  private tokenState: TokenState = 'ok';
  private waiting: ((token: string) => void)[] = [];
  private me: string | undefined;
  private readonly watches = new Map<string, SessionWatch>();
  private focused: string | null = null;
  private readonly list: SessionList;
  private readonly panel: SessionPanel;
  private readonly render = frameScheduler(() => this.renderNow());
  private lastListRender = 0;
  private listTimer: ReturnType<typeof setTimeout> | undefined;

  private readonly loginSection = byId('login');
  private readonly loginForm = byId<HTMLFormElement>('login-form');
  private readonly tokenInput = byId<HTMLInputElement>('token');
  private readonly loginTitle = byId('login-h');
  private readonly loginHint = byId('login-hint');
  private readonly loginError = byId('login-error');
  private readonly appEl = byId('app');
  private readonly conn = byId('conn');
  private readonly who = byId('who');
  private readonly signOut = byId<HTMLButtonElement>('signout');
  private readonly placeholder = byId('placeholder');
  private readonly announcer = byId('announcer');
  private readonly listProblem = byId('list-problem');

  constructor(private readonly config: HubConfig) {
    this.list = new SessionList(() => this.renderListNow());
    this.panel = new SessionPanel((t) => this.announce(t));
    byId('sessions-slot').replaceWith(this.list.root);
    byId('session-slot').replaceWith(this.panel.root);
    setHidden(this.panel.root, true);
    this.loginForm.addEventListener('submit', (ev) => {
      ev.preventDefault();
      void this.submitToken();
    });
    this.signOut.addEventListener('click', () => this.logout());
    window.addEventListener('hashchange', () => this.route(true));
  }

  start(): void {
    if (this.config.dev) {
      this.tokenInput.type = 'text';
      this.tokenInput.value = 'dev:operator:ops-1';
      setText(this.loginHint, 'This hub runs in development mode (--dev): any token of the form dev:operator:<name> signs you in as that operator.');
    } else {
      setText(this.loginHint, 'Paste an operator connection token (a JWT your backend mints with POST /v1/tokens, or `eva-hub token --role operator`).');
    }
    const saved = sessionStorage.getItem(TOKEN_KEY);
    if (saved) {
      this.tokenInput.value = saved;
      void this.signIn(saved);
    } else {
      this.tokenInput.focus();
    }
  }

  // ------------------------------------------------------------ signing in

  private async submitToken(): Promise<void> {
    const token = this.tokenInput.value.trim();
    if (token === '') {
      this.loginFailed('Enter a connection token.');
      return;
    }
    if (this.client !== null && this.tokenState === 'expired') {
      // The connection waits for a fresh token; its sessions resume.
      this.token = token;
      this.tokenState = 'ok';
      sessionStorage.setItem(TOKEN_KEY, token);
      for (const w of this.waiting.splice(0)) w(token);
      setHidden(this.loginSection, true);
      return;
    }
    await this.signIn(token);
  }

  private async signIn(token: string): Promise<void> {
    this.teardown();
    this.token = token;
    this.tokenState = 'ok';
    setText(this.loginError, '');
    const client = new EvaClient({ url: hubUrl(), token: () => this.currentToken(), reconnect: { minDelayMs: 200, maxDelayMs: 5000 } });
    this.client = client;
    client.on('connection', (s) => this.onConnection(client, s));
    client.on('welcome', (w) => this.onWelcome(w));
    let welcome: WelcomeFrame;
    try {
      welcome = await client.connect();
    } catch {
      if (this.client === client) {
        this.loginFailed(`The hub refused this token: ${closedReason(client.status)}.`);
        this.teardown();
      }
      return;
    }
    if (this.client !== client) return;
    if (welcome.role !== 'operator') {
      this.teardown();
      this.loginFailed(`This is a ${welcome.role} token; the console needs an operator token${this.config.dev ? ' (for example dev:operator:ops-1)' : ''}.`);
      return;
    }
    sessionStorage.setItem(TOKEN_KEY, token);
    setHidden(this.loginSection, true);
    setHidden(this.appEl, false);
    setHidden(this.signOut, false);
    this.lister = new SessionLister({
      client,
      onList: (l) => this.onList(l),
      onProblem: (p) => setText(this.listProblem, p ?? ''),
    });
    this.lister.start();
    this.route(false);
    this.render();
  }

  /** The token for the next connection; after an expiry, the one the operator types next. */
  private currentToken(): Promise<string> {
    if (this.tokenState === 'ok') return Promise.resolve(this.token);
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  private loginFailed(message: string): void {
    setHidden(this.loginSection, false);
    setText(this.loginTitle, 'Sign in');
    setText(this.loginError, message);
    this.tokenInput.focus();
  }

  private logout(): void {
    sessionStorage.removeItem(TOKEN_KEY);
    this.teardown();
    setHidden(this.appEl, true);
    setHidden(this.signOut, true);
    setText(this.who, '');
    setText(this.loginError, '');
    setHidden(this.loginSection, false);
    this.tokenInput.value = this.config.dev ? 'dev:operator:ops-1' : '';
    this.tokenInput.focus();
  }

  private teardown(): void {
    const client = this.client;
    this.client = null;
    this.lister?.stop();
    this.lister = null;
    for (const w of this.watches.values()) w.dispose();
    this.watches.clear();
    this.waiting = [];
    client?.close();
    this.panel.focus(null, undefined);
    setHidden(this.panel.root, true);
  }

  private onWelcome(w: WelcomeFrame): void {
    this.me = w.subject;
    setText(this.who, `Signed in as ${w.subject} (${w.role})`);
  }

  private onConnection(client: EvaClient, s: ConnectionStatus): void {
    if (this.client !== client) return;
    setText(this.conn, describeStatus(s));
    setAttr(this.conn, 'data-state', s.state);
    if (s.state === 'reconnecting' && s.closeCode === 4002) {
      this.tokenState = 'expired';
      setHidden(this.loginSection, false);
      setText(this.loginTitle, 'Token expired');
      setText(this.loginError, 'Your token has expired. Enter a fresh one to carry on: the sessions resume where they were.');
      this.tokenInput.value = '';
      this.tokenInput.focus();
    } else if (s.state === 'closed' && !this.appEl.hidden) {
      this.loginFailed(`Disconnected: ${closedReason(s)}. Sign in again.`);
    }
  }

  // ------------------------------------------------------------ sessions

  private onList(sessions: Summary[]): void {
    const client = this.client;
    if (client === null) return;
    const listed = new Set<string>();
    for (const s of sessions.slice(0, WATCH_MAX)) {
      listed.add(s.session);
      const w = this.watches.get(s.session);
      if (w === undefined) this.watches.set(s.session, this.watch(client, s));
      else w.summary = s;
    }
    // Sessions that left the list (ended) are let go, unless on screen.
    for (const [id, w] of this.watches) {
      if (!listed.has(id) && id !== this.focused) {
        w.dispose();
        this.watches.delete(id);
      }
    }
    this.renderListNow();
    this.render();
  }

  private watch(client: EvaClient, s: Summary): SessionWatch {
    return new SessionWatch(client, s, () => this.me, (w) => {
      if (w.id === this.focused) this.render();
      this.scheduleList();
    });
  }

  private route(moveFocus: boolean): void {
    const m = /^#\/s\/([0-9a-fA-F-]{36})$/.exec(location.hash);
    const id = m?.[1]?.toLowerCase() ?? null;
    this.focused = id;
    this.list.setFocused(id);
    const client = this.client;
    if (id !== null && client !== null && !this.watches.has(id)) {
      // A link to a session not (yet) listed: join it to show it.
      this.watches.set(id, this.watch(client, { session: id, status: 'created', created_at: 0, participant_count: 0, renderer_connected: false, is_speaking: false, current_slide: 0, open_alerts: 0 }));
    }
    const w = id === null ? null : (this.watches.get(id) ?? null);
    this.panel.focus(w, this.me);
    setHidden(this.panel.root, w === null);
    setHidden(this.placeholder, w !== null);
    this.renderListNow();
    this.render();
    if (moveFocus && w !== null) requestAnimationFrame(() => document.getElementById('session-title')?.focus());
  }

  // ------------------------------------------------------------ rendering

  private renderNow(): void {
    this.panel.focus(this.focused === null ? null : (this.watches.get(this.focused) ?? null), this.me);
    this.panel.render();
  }

  /** The list repaints at most four times a second: 50 sessions × 10 updates/s would be 500 otherwise. */
  private scheduleList(): void {
    if (this.listTimer !== undefined) return;
    const wait = Math.max(0, 250 - (performance.now() - this.lastListRender));
    this.listTimer = setTimeout(() => {
      this.listTimer = undefined;
      this.renderListNow();
    }, wait);
  }

  private renderListNow(): void {
    this.lastListRender = performance.now();
    this.list.render([...this.watches.values()]);
  }

  private announce(text: string): void {
    setText(this.announcer, '');
    requestAnimationFrame(() => setText(this.announcer, text));
  }
}
