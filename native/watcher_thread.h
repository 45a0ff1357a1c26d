// The readiness backend that needs only Node-API: one epoll watcher thread
// per environment, waking JS through a threadsafe function. For runtimes
// without a working libuv loop (Bun, Deno); see watcher_thread.c.
#ifndef FDPASS_WATCHER_THREAD_H
#define FDPASS_WATCHER_THREAD_H

#include <node_api.h>

// Adds threadStart, threadWatch, threadSetEvents and threadCloseWatcher to exports and
// registers the environment's cleanup hook. Starts no thread: the first
// threadWatch does.
napi_status fdp_thread_backend_init(napi_env env, napi_value exports);

#endif
