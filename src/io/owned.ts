// Who owns a received fd, as a value. The addon marks every fd it receives
// in the owned-fd map (src/base/native.ts): such an fd is in the library's care,
// and the end of the environment (a worker that exits) closes it. It leaves
// that care exactly once: handed to the caller (disowned: the caller closes
// it from now on) or closed by the library. A Kept value carries fds still
// in the library's care until a protocol module hands it out or drops it.
import { native, ownedMap } from '../base/native.js';

/** Hand an fd to the caller: it is theirs to close from now on. */
export function disown(fd: number): void {
  if (fd >= 0 && fd < ownedMap.length * 8) ownedMap[fd >> 3]! &= ~(1 << (fd & 7));
}

/** Take an fd back into the library's care (a caller that put it back, as usocket's unshift). */
export function own(fd: number): void {
  if (fd >= 0 && fd < ownedMap.length * 8) ownedMap[fd >> 3]! |= 1 << (fd & 7);
}

/** Hand fds to the caller. */
export function disownAll(fds: readonly number[]): void {
  for (let i = 0; i < fds.length; i++) disown(fds[i]!);
}

/** Close fds that nobody will receive (errors ignored: they are ours). */
export function discardFds(fds: readonly number[]): void {
  for (let i = 0; i < fds.length; i++) native.close(fds[i]!);
}

/** A value whose fds are still in the library's care. */
export class Kept<T> {
  readonly value: T;
  readonly fds: readonly number[];

  constructor(value: T, fds: readonly number[]) {
    this.value = value;
    this.fds = fds;
  }

  /** The value, its fds now the caller's. */
  handOut(): T {
    disownAll(this.fds);
    return this.value;
  }

  /** Nobody will receive it: close its fds. */
  discard(): void {
    discardFds(this.fds);
  }
}
