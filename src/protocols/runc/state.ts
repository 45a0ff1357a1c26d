// The OCI runtime-spec's ContainerProcessState (specs-go/state.go), which runc
// sends to a seccomp agent, and its validation.
import { ErrorCodes, FdPassError } from '../internal.js';

/** The status of a container, as the runtime spec defines it. */
export type ContainerStatus = 'creating' | 'created' | 'running' | 'stopped';

/** The state of a container (runtime spec "State"). */
export interface ContainerState {
  ociVersion: string;
  id: string;
  status: ContainerStatus;
  /** The container's process on the host; absent once stopped. */
  pid?: number;
  /** Absolute path of the container's bundle. */
  bundle: string;
  annotations?: Record<string, string>;
}

/**
 * What a runtime sends to a seccomp agent (runtime spec
 * "ContainerProcessState"): the fds travel with it, in the order of `fds`.
 */
export interface ContainerProcessState {
  ociVersion: string;
  /** Names of the fds that come with the state, in order ('seccompFd'). */
  fds: string[];
  /** The container process the fds belong to. */
  pid: number;
  /** `linux.seccomp.listenerMetadata` from the container's config. */
  metadata?: string;
  state: ContainerState;
}

/** The name runc gives the seccomp notify fd in `fds`. */
export const SECCOMP_FD_NAME = 'seccompFd';

const STATUSES: readonly string[] = ['creating', 'created', 'running', 'stopped'];

function bad(what: string): FdPassError {
  return new FdPassError(ErrorCodes.BAD_MESSAGE, `not a ContainerProcessState: ${what}`);
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isPid(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 0x7fffffff;
}

/**
 * Check that a parsed JSON value is a ContainerProcessState; returns a copy
 * that holds only the spec's fields, or an ERR_FDPASS_BAD_MESSAGE error.
 */
export function toContainerProcessState(value: unknown): ContainerProcessState | FdPassError {
  if (!isRecord(value)) return bad('not a JSON object');
  const { ociVersion, fds, pid, metadata, state } = value;
  if (typeof ociVersion !== 'string') return bad('"ociVersion" is not a string');
  if (!Array.isArray(fds) || !fds.every((n): n is string => typeof n === 'string' && n.length > 0)) {
    return bad('"fds" is not an array of names');
  }
  if (new Set(fds).size !== fds.length) return bad('"fds" names an fd twice');
  if (!isPid(pid)) return bad('"pid" is not a pid');
  if (metadata !== undefined && typeof metadata !== 'string') return bad('"metadata" is not a string');
  if (!isRecord(state)) return bad('"state" is not an object');
  const s = state;
  if (typeof s.ociVersion !== 'string') return bad('"state.ociVersion" is not a string');
  if (typeof s.id !== 'string' || s.id.length === 0) return bad('"state.id" is not a container id');
  if (typeof s.status !== 'string' || !STATUSES.includes(s.status)) return bad('"state.status" is not a container status');
  if (s.pid !== undefined && !isPid(s.pid)) return bad('"state.pid" is not a pid');
  if (typeof s.bundle !== 'string') return bad('"state.bundle" is not a string');
  if (s.annotations !== undefined) {
    if (!isRecord(s.annotations) || !Object.values(s.annotations).every((a) => typeof a === 'string')) {
      return bad('"state.annotations" is not a map of strings');
    }
  }
  const out: ContainerProcessState = {
    ociVersion,
    fds: [...fds],
    pid,
    state: {
      ociVersion: s.ociVersion,
      id: s.id,
      status: s.status as ContainerStatus,
      bundle: s.bundle,
    },
  };
  if (metadata !== undefined) out.metadata = metadata;
  if (s.pid !== undefined) out.state.pid = s.pid as number;
  if (s.annotations !== undefined) out.state.annotations = { ...(s.annotations as Record<string, string>) };
  return out;
}
