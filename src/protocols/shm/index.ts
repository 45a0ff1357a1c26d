/**
 * fdpass/shm: memory shared by passing an fd. `SharedMemory.create(size)`
 * makes a memfd and maps it as an ArrayBuffer; seal it and send its fd to
 * another process; `SharedMemory.fromFd(fd)` maps a memfd (or file) that a
 * peer sent, refusing one the peer could still shrink under the mapping;
 * `shm.remap(fd)` maps the next one into the same buffer.
 * @packageDocumentation
 */
export { SharedMemory } from './shm.js';
export type { Seal, SharedMemoryCreateOptions, SharedMemoryFromFdOptions, SharedMemoryRemapOptions } from './shm.js';
