// The fast path: makes the running HAProxy's servers match the rendered slots
// through the Runtime API, with no reload. Level-triggered: it reads what runs
// (`show servers state`), compares it slot by slot with what the view wants, and
// sends only the differences:
//   filled slot, other address  → set server B/S addr A port P
//   filled slot, in maintenance → set server B/S state ready
//   filled slot, not running    → set server B/S health up
//   empty slot, not in maint    → set server B/S state maint
//   slot the process lacks      → add server B/S A:P (+ enable server)
// It also runs after every reload, so a server state file restored by HAProxy
// can never leave a slot in a state the view does not want. After a change it
// writes `show servers state` to the server-state-file, so a reload (ours or an
// operator's) starts from it. The Host → backend map is made level by the same
// read-compare-send, except on the runner's change path between reloads, where
// the map this process last read and changed is trusted (a full read again
// after every reload, an owed sync, or a master that re-read its files).
import { isIP } from 'node:net';
import { rm } from 'node:fs/promises';
import { GantryError, writeFileAtomic } from '@gantry/core';
import { batch, cliRequest } from './socket.ts';
import { parseShowMap, planHostMap } from './host-map.ts';
import type { HostRoute, SlotView } from '../view.ts';

export interface ServerState {
  backend: string;
  name: string;
  addr: string;
  port: number;
  opState: number;
  adminState: number;
}

/** HAProxy's admin state bits: forced, inherited, resolution and hostname maintenance */
const MAINT = 0x01 | 0x02 | 0x20 | 0x40;
const DRAIN = 0x08 | 0x10;
const RUNNING = 2;

export function parseServersState(text: string): Map<string, Map<string, ServerState>> {
  const out = new Map<string, Map<string, ServerState>>();
  let col: Record<'be' | 'srv' | 'addr' | 'port' | 'op' | 'admin', number> | undefined;
  for (const line of text.split('\n')) {
    if (line.startsWith('# ')) {
      const cols = line.slice(2).trim().split(/\s+/);
      col = { be: cols.indexOf('be_name'), srv: cols.indexOf('srv_name'), addr: cols.indexOf('srv_addr'), port: cols.indexOf('srv_port'), op: cols.indexOf('srv_op_state'), admin: cols.indexOf('srv_admin_state') };
      continue;
    }
    if (!col || !line.trim()) continue;
    const f = line.trim().split(/\s+/);
    const at = (i: number): string => (i < 0 ? '' : f[i] ?? '');
    const s: ServerState = {
      backend: at(col.be), name: at(col.srv), addr: at(col.addr),
      port: Number(at(col.port)), opState: Number(at(col.op)), adminState: Number(at(col.admin)),
    };
    let b = out.get(s.backend);
    if (!b) { b = new Map(); out.set(s.backend, b); }
    b.set(s.name, s);
  }
  return out;
}

export interface RuntimeBackend { backend: string; slots: readonly SlotView[] }

/**
 * A server-state text (`show servers state`: a version line, a `# ` header, a line a server) with
 * the lines of `backends` replaced by those of `fresh` (their own `show servers state <b>`
 * answers). Undefined when the two texts do not have the same version and header (the caller
 * dumps everything instead). HAProxy finds a server's line by backend and server name, not by
 * position.
 */
export function patchServersState(base: string, fresh: string, backends: ReadonlySet<string>): string | undefined {
  const lines = base.split('\n');
  const header = lines[1];
  if (!header?.startsWith('# ')) return undefined;
  const be = header.slice(2).trim().split(/\s+/).indexOf('be_name');
  if (be < 0) return undefined;
  const out = [lines[0]!, header];
  for (const line of lines.slice(2)) if (line.trim() && !backends.has(line.trim().split(/\s+/)[be]!)) out.push(line);
  for (const line of fresh.split('\n')) {
    if (!line.trim()) continue;
    if (line.startsWith('#')) { if (line !== header) return undefined; continue; }
    if (!line.includes(' ')) { if (line !== lines[0]) return undefined; continue; }
    if (!backends.has(line.trim().split(/\s+/)[be]!)) return undefined;
    out.push(line);
  }
  return `${out.join('\n')}\n`;
}

export class RuntimeUnsupported extends GantryError {
  constructor(message: string) { super('E_RUNTIME_UNSUPPORTED', message); }
}

/**
 * the commands that make `current` match `desired`. A slot holding a host name (the
 * Runtime API takes addresses): hostNames 'refuse' throws RuntimeUnsupported (only a
 * reload can apply it), 'skip' leaves it as the config wrote it (after a reload).
 */
export function planRuntime(desired: readonly RuntimeBackend[], current: Map<string, Map<string, ServerState>>, hostNames: 'refuse' | 'skip' = 'refuse'): string[] {
  const cmds: string[] = [];
  for (const { backend, slots } of desired) {
    // a group the template does not write (or a backend a reload has not brought yet) is not ours to fill
    const running = current.get(backend);
    if (!running) continue;
    for (const slot of slots) {
      const id = `${backend}/${slot.name}`;
      const s = running.get(slot.name);
      if (slot.address !== null && slot.port !== null) {
        if (isIP(slot.address) === 0 && hostNames === 'skip') continue;
        if (isIP(slot.address) === 0) throw new RuntimeUnsupported(`${id}: ${slot.address} is a host name; the Runtime API takes addresses`);
        if (!s) {
          cmds.push(`add server ${id} ${isIP(slot.address) === 6 ? `[${slot.address}]` : slot.address}:${slot.port}`, `enable server ${id}`);
          continue;
        }
        if (s.addr !== slot.address || s.port !== slot.port) cmds.push(`set server ${id} addr ${slot.address} port ${slot.port}`);
        if (s.adminState & (MAINT | DRAIN)) cmds.push(`set server ${id} state ready`);
        if (s.opState !== RUNNING) cmds.push(`set server ${id} health up`);
      } else if (!s) {
        cmds.push(`add server ${id} 127.0.0.1:1`); // dynamic servers start in maintenance
      } else if (!(s.adminState & 0x01)) {
        cmds.push(`set server ${id} state maint`);
      }
    }
  }
  return cmds;
}

/** answers that say a command did what it was asked */
const OK = /^(|.*changed from.*|.*no need to change.*|New server registered\.)$/;

export interface RuntimeResult {
  commands: number;
  /** reading what runs (`show servers state` of the backends, `show map`), ms; 0 when nothing was read */
  readMs?: number;
  /** sending the commands, ms */
  sendMs?: number;
}

export class RuntimeApi {
  private readonly socket: string;
  private readonly stateFile: string | undefined;

  constructor(opts: { socket: string; stateFile?: string | undefined }) {
    this.socket = opts.socket;
    this.stateFile = opts.stateFile;
  }

  async serversState(backends?: readonly string[]): Promise<{ text: string; servers: Map<string, Map<string, ServerState>> }> {
    if (backends) {
      // a few backends: one request, their states one after the other
      const answers = await batch(this.socket, backends.map((b) => `show servers state ${b}`), 15_000);
      const text = answers.join('\n');
      return { text, servers: parseServersState(text) };
    }
    const text = await this.allServersText();
    return { text, servers: parseServersState(text) };
  }

  /** `show servers state` of every backend, as HAProxy wrote it (what the server-state file holds) */
  private async allServersText(): Promise<string> {
    const text = await cliRequest(this.socket, 'show servers state', 15_000);
    if (!/^\d+\n#/.test(text)) throw new GantryError('E_HAPROXY_COMMAND', `show servers state: unexpected answer ${JSON.stringify(text.slice(0, 120))}`);
    return text;
  }

  /**
   * Brings the running servers to the slots; returns how many commands it took.
   * `only`: the backends that may differ (the others are left unread), when known.
   */
  async apply(desired: readonly RuntimeBackend[], only?: ReadonlySet<string>, hostNames: 'refuse' | 'skip' = 'refuse', opts: { saveLater?: boolean } = {}): Promise<RuntimeResult> {
    const wanted = only ? desired.filter((d) => only.has(d.backend)) : desired;
    if (only && wanted.length === 0) return { commands: 0 };
    const t0 = performance.now();
    const { servers } = await this.serversState(only && wanted.length <= 64 ? wanted.map((d) => d.backend) : undefined);
    const cmds = planRuntime(wanted, servers, hostNames);
    const t1 = performance.now();
    if (cmds.length) {
      await this.send(cmds);
      // saveLater: the caller has more to send first (the host map) and schedules the save itself
      if (!opts.saveLater) this.scheduleSave();
    }
    return { commands: cmds.length, readMs: t1 - t0, sendMs: performance.now() - t1 };
  }

  /** no command sent since the last state file write (false until one is written, or after forgetState) */
  private unsaved = true;

  /**
   * whether the server-state file holds the servers as they run: no command was sent since it
   * was last written (a write under way is waited for)
   */
  async stateSaved(): Promise<boolean> {
    if (this.stateFile === undefined) return false;
    await this.writes;
    return !this.unsaved;
  }

  /** the running servers are unknown (HAProxy restarted, or re-read its files): the next reload saves first, the next map change reads the map */
  forgetState(): void {
    this.unsaved = true;
    this.knownMaps.clear();
  }

  /** sends commands; throws E_HAPROXY_COMMAND with HAProxy's answer when one was refused */
  private async send(cmds: readonly string[]): Promise<void> {
    this.unsaved = true;
    const answers = await batch(this.socket, cmds);
    const bad = answers.flatMap((a) => a.split('\n')).map((l) => l.trim()).filter((l) => !OK.test(l));
    if (bad.length) throw new GantryError('E_HAPROXY_COMMAND', `Runtime API refused: ${bad.slice(0, 3).join(' | ')}`);
  }

  /**
   * each map as the running HAProxy holds it, as far as this process knows: set after a read
   * and the commands that followed it succeeded; dropped on any failure and by forgetState
   */
  private readonly knownMaps = new Map<string, Map<string, string>>();

  /**
   * brings the running Host → backend map (loaded from `file`) to the routes; returns how many
   * commands it took. It reads the map (`show map`) first, unless `trustKnown` and this process
   * knows what runs since its last read: between reloads only the Runtime API changes the map,
   * and a read costs tens of milliseconds at thousands of names.
   */
  async applyHostMap(file: string, routes: readonly HostRoute[], trustKnown = false): Promise<RuntimeResult> {
    let current = trustKnown ? this.knownMaps.get(file) : undefined;
    this.knownMaps.delete(file);
    const t0 = performance.now();
    if (!current) {
      const text = await cliRequest(this.socket, `show map ${file}`, 15_000);
      if (/^Unknown map identifier/m.test(text)) throw new GantryError('E_HAPROXY_COMMAND', `show map ${file}: HAProxy runs no such map (a config without it?)`);
      current = parseShowMap(text);
    }
    const cmds = planHostMap(file, routes, current);
    const t1 = performance.now();
    if (cmds.length) await this.send(cmds);
    this.knownMaps.set(file, new Map(routes.map((r) => [r.host, r.backend])));
    return { commands: cmds.length, readMs: t1 - t0, sendMs: performance.now() - t1 };
  }

  private saving: Promise<void> | undefined;
  private saveAgain = false;
  /** the state file is written after the change is live, off the change's path; one write at a time */
  scheduleSave(): void {
    if (!this.stateFile) return;
    if (this.saving) { this.saveAgain = true; return; }
    this.saving = (async () => {
      do {
        this.saveAgain = false;
        await this.saveState().catch(() => undefined);
      } while (this.saveAgain);
    })().finally(() => { this.saving = undefined; });
  }

  /** waits for a scheduled state file write (tests, shutdown) */
  async saved(): Promise<void> {
    await this.saving;
  }

  /** writes in call order: a scheduled save still under way can never land after a later one */
  private writes: Promise<void> = Promise.resolve();

  /**
   * `show servers state` into the server-state-file (atomically), after any write already asked
   * for: the reload path awaits this, so the file it reloads from is the state of this moment.
   */
  saveState(): Promise<void> {
    return this.write(async () => this.allServersText());
  }

  /**
   * Brings the running servers of `changed` to the slots and saves the state file before a reload.
   * When the file was current before (nothing sent since it was written) and few backends change,
   * only their lines are read again (`show servers state <b>`) and put in place of theirs in the
   * text last written; otherwise the whole dump (at 20,000 backends HAProxy takes a second for it).
   */
  async applyAndSave(desired: readonly RuntimeBackend[], changed: ReadonlySet<string>): Promise<'dump' | 'patched' | 'current'> {
    const current = await this.stateSaved();
    await this.apply(desired, changed, 'skip', { saveLater: true });
    const base = this.savedText;
    if (!current || base === undefined || changed.size > 64) { await this.saveState(); return 'dump'; }
    if (changed.size === 0) return 'current';
    const backends = [...changed];
    let how: 'dump' | 'patched' = 'patched';
    await this.write(async () => {
      const fresh = (await batch(this.socket, backends.map((b) => `show servers state ${b}`), 15_000)).join('\n');
      const patched = patchServersState(base, fresh, changed);
      if (patched !== undefined) return patched;
      how = 'dump';
      return this.allServersText();
    });
    return how;
  }

  /**
   * The server-state file is known to be older than what the render wants (the Runtime API failed
   * before a reload): it is removed, after any write under way, so the new workers start from the
   * config, which is the render, and not from addresses the render no longer holds (HAProxy starts
   * without the file, with a warning). The sync after the reload brings the running servers' state.
   */
  dropStateFile(): Promise<void> {
    if (!this.stateFile) return Promise.resolve();
    const file = this.stateFile;
    const p = this.writes.then(async () => {
      this.unsaved = true;
      this.savedText = undefined;
      await rm(file, { force: true });
    });
    this.writes = p.catch(() => undefined);
    return p;
  }

  /** the text of the state file as this process last wrote it */
  private savedText: string | undefined;

  /** writes the state file from `text()`, in call order; a command sent meanwhile marks it unsaved again */
  private write(text: () => Promise<string>): Promise<void> {
    if (!this.stateFile) return Promise.resolve();
    const file = this.stateFile;
    const p = this.writes.then(async () => {
      this.unsaved = false;
      try {
        // not parsed: at 10,000 servers that costs more than the dump
        const t = await text();
        await writeFileAtomic(file, t);
        this.savedText = t;
      } catch (err) {
        this.unsaved = true;
        this.savedText = undefined;
        throw err;
      }
    });
    this.writes = p.catch(() => undefined);
    return p;
  }
}
