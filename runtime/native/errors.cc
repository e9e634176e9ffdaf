#include "errors.h"

#include <bpf/libbpf.h>

#include <cerrno>
#include <cstring>

namespace tsbpf {

std::string ErrnoText(int err) {
  if (err < 0) err = -err;
  char buf[256];
  if (libbpf_strerror(err, buf, sizeof(buf)) == 0) return buf;
  return std::string("errno ") + std::to_string(err);
}

Napi::Error MakeError(Napi::Env env, const std::string& op, int err, const std::string& what) {
  if (err < 0) err = -err;
  std::string msg = what;
  if (err != 0) msg += ": " + ErrnoText(err);
  Napi::Error e = Napi::Error::New(env, msg);
  e.Value().Set("errno", Napi::Number::New(env, err));
  e.Value().Set("op", Napi::String::New(env, op));
  return e;
}

void ThrowErrno(Napi::Env env, const std::string& op, int err, const std::string& what) {
  throw MakeError(env, op, err, what);
}

void Throw(Napi::Env env, const Status& st) {
  // A Status message is complete already (it names the object); add strerror.
  throw MakeError(env, st.op, st.err, st.message);
}

void ThrowArg(Napi::Env env, const std::string& what) {
  Napi::Error e = Napi::TypeError::New(env, what);
  e.Value().Set("errno", Napi::Number::New(env, EINVAL));
  e.Value().Set("op", Napi::String::New(env, "argument"));
  throw e;
}

}  // namespace tsbpf
