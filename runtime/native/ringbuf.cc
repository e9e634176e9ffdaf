// BPF ring buffers delivered on the Node event loop: libbpf's epoll fd is
// watched with uv_poll, and each readable event consumes what is ready and
// calls the JS callback once per record with a copy of it. No thread, no
// busy polling.
#include <bpf/libbpf.h>
#include <uv.h>

#include <cerrno>
#include <memory>

#include "common.h"

namespace tsbpf {

struct RingBufHandle {
  ring_buffer* rb = nullptr;
  uv_poll_t* poll = nullptr;
  AddonState* state = nullptr;
  napi_env env = nullptr;
  Napi::FunctionReference callback;
  // Keeps the External alive while open: an open ring buffer is a listener
  // and must not vanish with the last JS reference.
  Napi::Reference<Napi::External<RingBufHandle>> self;
  std::unique_ptr<Napi::AsyncContext> asyncContext;
  bool closed = false;
  bool consuming = false;
  // The first exception a callback threw during a consume.
  Napi::Reference<Napi::Value> error;
  bool hasError = false;

  void Close();
  void Release();
};

static void FreePoll(uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); }

// Frees what a closed handle owns; deferred while a consume is running.
void RingBufHandle::Release() {
  if (rb) {
    ring_buffer__free(rb);
    rb = nullptr;
  }
  if (state) {
    state->ringbufs.erase(this);
    state = nullptr;
  }
  callback.Reset();
  error.Reset();
  asyncContext.reset();
  self.Reset();
}

void RingBufHandle::Close() {
  if (closed) return;
  closed = true;
  if (poll) {
    uv_poll_stop(poll);
    poll->data = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(poll), FreePoll);
    poll = nullptr;
  }
  if (!consuming) Release();
}

void CloseAllRingBufs(AddonState* state) {
  auto all = state->ringbufs;
  for (RingBufHandle* h : all) {
    h->consuming = false;
    h->Close();
    h->state = nullptr;
  }
  state->ringbufs.clear();
}

static void FinalizeRingBuf(Napi::Env env, RingBufHandle* h) {
  h->consuming = false;
  h->Close();
  delete h;
}

static int OnSample(void* ctx, void* data, size_t size) {
  auto* h = static_cast<RingBufHandle*>(ctx);
  if (h->closed) return -ECANCELED;
  Napi::Env env(h->env);
  Napi::HandleScope scope(env);
  // C++ exceptions must not cross libbpf's C frames: keep the error and stop.
  try {
    h->callback.Call({Napi::Buffer<uint8_t>::Copy(env, static_cast<const uint8_t*>(data), size)});
  } catch (const Napi::Error& e) {
    if (!h->hasError) {
      h->error = Napi::Persistent(e.Value().As<Napi::Value>());
      h->hasError = true;
    }
    return -ECANCELED;
  }
  return 0;
}

// Runs ring_buffer__consume; returns the record count and leaves a thrown
// exception in h->error.
static int Consume(RingBufHandle* h) {
  h->consuming = true;
  int r = ring_buffer__consume(h->rb);
  h->consuming = false;
  return r;
}

static void OnReadable(uv_poll_t* poll, int status, int events) {
  auto* h = static_cast<RingBufHandle*>(poll->data);
  if (!h || h->closed || !h->rb) return;
  Napi::Env env(h->env);
  Napi::HandleScope scope(env);
  Napi::Value error;
  {
    // One callback scope for the batch: microtasks run once, after it.
    Napi::CallbackScope cbScope(env, *h->asyncContext);
    Consume(h);
    if (h->hasError) {
      error = h->error.Value();
      h->error.Reset();
      h->hasError = false;
    }
  }
  if (h->closed) h->Release();
  if (!error.IsEmpty()) napi_fatal_exception(env, error);  // like an exception in any event handler
}

// ringBufferOpen(mapFd, callback) -> External
static Napi::Value RingBufferOpen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0, "mapFd");
  if (info.Length() < 2 || !info[1].IsFunction()) ThrowArg(env, "callback must be a function");
  auto* h = new RingBufHandle();
  h->env = env;
  h->rb = ring_buffer__new(fd, OnSample, h, nullptr);
  if (!h->rb) {
    int err = errno;
    delete h;
    ThrowErrno(env, "ring_buffer__new", err, "cannot open the ring buffer of map fd " + std::to_string(fd));
  }
  uv_loop_t* loop = nullptr;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok || !loop) {
    ring_buffer__free(h->rb);
    delete h;
    ThrowErrno(env, "napi_get_uv_event_loop", EINVAL, "no event loop");
  }
  h->poll = new uv_poll_t();
  int r = uv_poll_init(loop, h->poll, ring_buffer__epoll_fd(h->rb));
  if (r == 0) {
    h->poll->data = h;
    r = uv_poll_start(h->poll, UV_READABLE, OnReadable);
    if (r != 0) {
      uv_close(reinterpret_cast<uv_handle_t*>(h->poll), FreePoll);
      h->poll = nullptr;
    }
  } else {
    delete h->poll;
    h->poll = nullptr;
  }
  if (r != 0) {
    ring_buffer__free(h->rb);
    delete h;
    ThrowErrno(env, "uv_poll_start", -r, std::string("cannot watch the ring buffer: ") + uv_strerror(r));
  }
  h->callback = Napi::Persistent(info[1].As<Napi::Function>());
  h->asyncContext = std::make_unique<Napi::AsyncContext>(env, "tsbpf:ringbuf");
  h->state = StateOf(info);
  h->state->ringbufs.insert(h);
  auto ext = Napi::External<RingBufHandle>::New(env, h, FinalizeRingBuf);
  h->self = Napi::Persistent(ext);
  return ext;
}

static RingBufHandle* GetRingBuf(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsExternal()) ThrowArg(info.Env(), "expected a ring buffer handle");
  return info[0].As<Napi::External<RingBufHandle>>().Data();
}

// ringBufferConsume(rb) -> records delivered; a callback's exception is rethrown.
static Napi::Value RingBufferConsume(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  RingBufHandle* h = GetRingBuf(info);
  if (h->closed || !h->rb) ThrowErrno(env, "ring_buffer__consume", EBADF, "the ring buffer is closed");
  if (h->consuming) ThrowErrno(env, "ring_buffer__consume", EBUSY, "the ring buffer is being consumed already");
  int r = Consume(h);
  if (h->closed) h->Release();
  if (h->hasError) {
    Napi::Value e = h->error.Value();
    h->error.Reset();
    h->hasError = false;
    throw Napi::Error(env, e);
  }
  if (r < 0 && r != -ECANCELED) ThrowErrno(env, "ring_buffer__consume", -r, "cannot consume the ring buffer");
  return Napi::Number::New(env, r < 0 ? 0 : r);
}

static Napi::Value RingBufferClose(const Napi::CallbackInfo& info) {
  GetRingBuf(info)->Close();
  return info.Env().Undefined();
}

// ringBufferRef(rb, ref): whether an open ring buffer keeps the process alive (default true).
static Napi::Value RingBufferRef(const Napi::CallbackInfo& info) {
  RingBufHandle* h = GetRingBuf(info);
  bool on = info.Length() < 2 || info[1].ToBoolean().Value();
  if (h->poll) {
    if (on) uv_ref(reinterpret_cast<uv_handle_t*>(h->poll));
    else uv_unref(reinterpret_cast<uv_handle_t*>(h->poll));
  }
  return info.Env().Undefined();
}

void RegisterRingBuf(Napi::Env env, Napi::Object exports, AddonState* state) {
  SetFn(env, exports, "ringBufferOpen", RingBufferOpen, state);
  SetFn(env, exports, "ringBufferConsume", RingBufferConsume, state);
  SetFn(env, exports, "ringBufferClose", RingBufferClose, state);
  SetFn(env, exports, "ringBufferRef", RingBufferRef, state);
}

}  // namespace tsbpf
