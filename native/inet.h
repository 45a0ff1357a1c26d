// TCP listeners (inet.c), registered by fdpass.c.
#ifndef FDPASS_INET_H
#define FDPASS_INET_H
#include <node_api.h>

napi_value fdp_inet_listen(napi_env env, napi_callback_info info);
napi_value fdp_inet_sock_name(napi_env env, napi_callback_info info);

#endif
