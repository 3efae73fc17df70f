// Stable server slots a backend: an instance keeps its slot (s1, s2 ...) for as
// long as it is at the same address in the backend, and a backend's slot count
// only grows (so the Runtime API can fill, empty or add slots without a reload).
// A freed slot goes to maintenance and is not given to another instance in the
// assignment that freed it; a new instance takes a slot never used first, then
// the one freed longest ago. HAProxy 2.6 puts a connection that was busy when a
// server's address changed back in the server's idle pool, and later requests
// reuse it: a slot handed straight to another instance left the old one getting
// requests. Rendered configs list every slot: filled ones with the instance's
// address, empty ones disabled.
import type { InstanceView, SlotView } from '../view.ts';

const slotKey = (i: InstanceView): string => `${i.key}\u0000${i.address}:${i.port}`;

export class SlotTable {
  private readonly minSlots: number;
  /** backend → slot index → instance key and address (undefined: free) */
  private readonly tables = new Map<string, Array<string | undefined>>();
  /** backend → slot index → the assignment that last freed it (absent: never used) */
  private readonly freedAt = new Map<string, number[]>();
  private assignments = 0;

  constructor(minSlots: number) {
    this.minSlots = Math.max(1, minSlots);
  }

  /** assigns slots for a backend's instances; call once a backend a view */
  assign(backend: string, instances: readonly InstanceView[]): SlotView[] {
    let table = this.tables.get(backend);
    if (!table) {
      table = new Array<string | undefined>(Math.max(this.minSlots, instances.length)).fill(undefined);
      this.tables.set(backend, table);
    }
    // a slot holds an instance at one address: an instance whose address or port changed (the same
    // service ID registered again elsewhere) leaves its slot and takes another, as a new one would
    const wanted = new Map(instances.map((i) => [slotKey(i), i]));
    // free the slots of instances that left (not given to another instance in this assignment)
    const now = ++this.assignments;
    let freed = this.freedAt.get(backend);
    if (!freed) { freed = []; this.freedAt.set(backend, freed); }
    for (let s = 0; s < table.length; s++) {
      if (table[s] !== undefined && !wanted.has(table[s]!)) { table[s] = undefined; freed[s] = now; }
    }
    const placed = new Set(table.filter((k): k is string => k !== undefined));
    for (const inst of instances) {
      const k = slotKey(inst);
      if (placed.has(k)) continue;
      // a free slot never used first, then the one freed longest ago: a request still in flight to
      // an instance that left (a long one) is the least likely to outlive its slot's next use
      let free = -1;
      for (let s = 0; s < table.length; s++) {
        if (table[s] !== undefined || freed[s] === now) continue;
        if (freed[s] === undefined) { free = s; break; } // never used: none better
        if (free === -1 || freed[s]! < freed[free]!) free = s;
      }
      if (free === -1) {
        // grow by half again (at least minSlots) so a burst does not add servers one by one
        const grow = Math.max(this.minSlots, Math.ceil(table.length / 2));
        free = table.length;
        table.push(...new Array<string | undefined>(grow).fill(undefined));
      }
      table[free] = k;
      placed.add(k);
    }
    return table.map((key, s) => {
      const inst = key === undefined ? null : wanted.get(key)!;
      return { name: `s${s + 1}`, instance: inst, address: inst ? inst.address : null, port: inst ? inst.port : null };
    });
  }

  /** forgets backends not in the list (after they left the rendered config) */
  retain(backends: Iterable<string>): void {
    const keep = new Set(backends);
    for (const b of [...this.tables.keys()]) if (!keep.has(b)) { this.tables.delete(b); this.freedAt.delete(b); }
  }

  size(backend: string): number | undefined {
    return this.tables.get(backend)?.length;
  }
}
