// BPF_PROG_TEST_RUN: a packet (and context) in, verdict and packet out.
#include <bpf/bpf.h>

#include <algorithm>
#include <cerrno>
#include <vector>

#include "common.h"

namespace tsbpf {

// testRun(progFd, { data, dataSizeOut?, ctx?, ctxSizeOut?, repeat?, flags? })
static Napi::Value TestRun(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0, "progFd");
  Napi::Object opts = ArgOptions(info, 1);
  auto data = OptBuffer(opts, "data");
  if (!data) ThrowArg(env, "data must be a Buffer");
  auto ctx = OptBuffer(opts, "ctx");
  int64_t dataSizeOut = OptInt(opts, "dataSizeOut").value_or(static_cast<int64_t>(data->Length()) + 256);
  int64_t ctxSizeOut = OptInt(opts, "ctxSizeOut").value_or(0);
  int64_t repeat = OptInt(opts, "repeat").value_or(1);
  int64_t flags = OptInt(opts, "flags").value_or(0);
  if (dataSizeOut < 0 || dataSizeOut > (64 << 20)) ThrowArg(env, "dataSizeOut is out of range");
  if (ctxSizeOut < 0 || ctxSizeOut > 4096) ThrowArg(env, "ctxSizeOut is out of range");
  if (repeat < 0 || repeat > 0xffffffffLL) ThrowArg(env, "repeat is out of range");

  std::vector<uint8_t> dataOut(std::max<int64_t>(dataSizeOut, 1));
  std::vector<uint8_t> ctxOut(std::max<int64_t>(ctxSizeOut, 1));
  LIBBPF_OPTS(bpf_test_run_opts, to);
  to.data_in = data->Data();
  to.data_size_in = static_cast<__u32>(data->Length());
  to.data_out = dataSizeOut > 0 ? dataOut.data() : nullptr;
  to.data_size_out = static_cast<__u32>(dataSizeOut);
  if (ctx) {
    to.ctx_in = ctx->Data();
    to.ctx_size_in = static_cast<__u32>(ctx->Length());
  }
  if (ctxSizeOut > 0) {
    to.ctx_out = ctxOut.data();
    to.ctx_size_out = static_cast<__u32>(ctxSizeOut);
  }
  to.repeat = static_cast<int>(repeat);
  to.flags = static_cast<__u32>(flags);
  if (bpf_prog_test_run_opts(fd, &to) != 0) {
    int err = errno;
    std::string what = "test run of program fd " + std::to_string(fd) + " failed";
    if (err == ENOSPC) what += " (the packet out is larger than dataSizeOut)";
    ThrowErrno(env, "bpf_prog_test_run_opts", err, what);
  }
  Napi::Object res = Napi::Object::New(env);
  res.Set("retval", static_cast<double>(static_cast<int32_t>(to.retval)));
  res.Set("data", Napi::Buffer<uint8_t>::Copy(env, dataOut.data(), std::min<size_t>(to.data_size_out, dataSizeOut)));
  if (ctxSizeOut > 0) {
    res.Set("ctx", Napi::Buffer<uint8_t>::Copy(env, ctxOut.data(), std::min<size_t>(to.ctx_size_out, ctxSizeOut)));
  } else {
    res.Set("ctx", env.Null());
  }
  res.Set("duration", static_cast<double>(to.duration));
  return res;
}

void RegisterTestRun(Napi::Env env, Napi::Object exports, AddonState* state) {
  SetFn(env, exports, "testRun", TestRun, state);
}

}  // namespace tsbpf
