/**
 * A loaded BPF program: what the kernel calls it, and where it can attach.
 */
import { TsbpfError } from '../sdk/errors.js';
import { HOOKS, type Hook } from '../sdk/model.js';

/** Attach points: the same as the model's hooks. */
export { HOOKS, type Hook };

export interface ProgramInfo {
  name: string;
  /** libbpf's program type name: 'xdp', 'sched_cls', ... */
  type: string;
  /** ELF section: 'xdp', 'tc', 'classifier/ingress', ... */
  section: string;
  fd: number;
  id: number;
  /** kernel tag (hex) */
  tag: string;
}

/** The owner a program needs: to know whether it is still open. */
export interface ProgramOwner {
  readonly name: string;
  readonly closed: boolean;
}

export class BpfProgram {
  readonly name: string;
  readonly type: string;
  readonly section: string;
  readonly id: number;
  readonly tag: string;
  /** The object this program belongs to. */
  readonly owner: ProgramOwner;
  readonly #fd: number;

  constructor(info: ProgramInfo, owner: ProgramOwner) {
    this.name = info.name;
    this.type = info.type;
    this.section = info.section;
    this.id = info.id;
    this.tag = info.tag;
    this.#fd = info.fd;
    this.owner = owner;
  }

  /** The program's fd; valid while its object is open. */
  get fd(): number {
    if (this.owner.closed) {
      throw new TsbpfError('CLOSED', `program '${this.name}' belongs to object '${this.owner.name}', which is closed`);
    }
    return this.#fd;
  }

  /** The hooks this program's type can attach to. */
  get hooks(): Hook[] {
    return hooksOf(this.type);
  }

  toJSON(): Omit<ProgramInfo, 'fd'> & { hooks: Hook[] } {
    return { name: this.name, type: this.type, section: this.section, id: this.id, tag: this.tag, hooks: this.hooks };
  }
}

export function hooksOf(type: string): Hook[] {
  if (type === 'xdp') return ['xdp'];
  if (type === 'sched_cls' || type === 'sched_act') return ['tc-ingress', 'tc-egress'];
  return [];
}

/** 'xdp' or 'tc' for a hook. */
export function hookFamily(hook: Hook): 'xdp' | 'tc' {
  return hook === 'xdp' ? 'xdp' : 'tc';
}
