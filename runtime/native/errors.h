// Errors thrown by the addon: plain JS Errors with errno (positive), op (the
// call that failed) and, for load failures, program and verifierLog.
// runtime/errors.ts turns them into TsbpfError.
#pragma once

#include <napi.h>

#include <string>

namespace tsbpf {

// A failure computed off the JS thread (netns workers) or before an Error can
// be built; turned into a JS Error by Throw().
struct Status {
  int err = 0;  // positive errno, 0 on success
  std::string op;
  std::string message;

  bool ok() const { return err == 0; }
  static Status Fail(int err, std::string op, std::string message) {
    Status s;
    s.err = err < 0 ? -err : err;
    s.op = std::move(op);
    s.message = std::move(message);
    return s;
  }
};

// strerror for kernel errnos and libbpf's own codes (LIBBPF_ERRNO__*).
std::string ErrnoText(int err);

// Error with message "<what>: <strerror(err)>", .errno and .op.
Napi::Error MakeError(Napi::Env env, const std::string& op, int err, const std::string& what);
[[noreturn]] void ThrowErrno(Napi::Env env, const std::string& op, int err, const std::string& what);
[[noreturn]] void Throw(Napi::Env env, const Status& st);
// A bad argument from JS (a bug in the caller): EINVAL, op 'argument'.
[[noreturn]] void ThrowArg(Napi::Env env, const std::string& what);

}  // namespace tsbpf
