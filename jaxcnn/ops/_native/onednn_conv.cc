// oneDNN convolution passes as XLA FFI handlers (CPU, float32, channels-last).
//
// Three handlers, one per oneDNN primitive:
//   jaxcnn_onednn_conv_forward          y  = conv(x, w) (+ b)         convolution_forward
//   jaxcnn_onednn_conv_backward_data    dx = conv^T(dy, w)            convolution_backward_data
//   jaxcnn_onednn_conv_backward_weights dw = corr(x, dy) over batch   convolution_backward_weights
//
// Layouts are jaxcnn's: activations (N, *spatial, C) (oneDNN's nwc / nhwc / ndhwc),
// weights (*window, C_in / groups, C_out), described to oneDNN by strides. The
// primitives pick their own weight layout (format_tag::any); the weights are
// reordered into it (and the weight gradient out of it) on every call.
//
// Attributes (all passes): stride, dilation, padding_lo, padding_hi (one int64 per
// spatial dimension; dilation as jaxcnn counts it, 1 = dense) and groups. Primitives
// are created once per shape and attributes and cached, and run one at a time, each on
// all of OpenMP's threads, with a user scratchpad (ExecutionMutex).

#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <unordered_map>
#include <vector>

#include <omp.h>

#include "oneapi/dnnl/dnnl.hpp"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;
using dnnl::memory;
using Dims = memory::dims;

namespace {

dnnl::engine& Engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

// The convolution's geometry, read from the buffers and attributes of one call.
struct Geometry {
  int64_t batch = 0, in_channels = 0, out_channels = 0, groups = 1;
  Dims in_spatial, out_spatial, window, stride, dilation, pad_lo, pad_hi;

  std::string Key(int pass) const {
    std::ostringstream key;
    key << pass << '|' << batch << ',' << in_channels << ',' << out_channels << ',' << groups;
    for (const Dims* dims : {&in_spatial, &out_spatial, &window, &stride, &dilation, &pad_lo, &pad_hi}) {
      key << '|';
      for (int64_t v : *dims) key << v << ',';
    }
    return key.str();
  }
};

Dims ToDims(ffi::Span<const int64_t> span) { return Dims(span.begin(), span.end()); }

memory::format_tag ChannelsLast(size_t rank) {
  switch (rank) {
    case 1: return memory::format_tag::nwc;
    case 2: return memory::format_tag::nhwc;
    default: return memory::format_tag::ndhwc;
  }
}

memory::desc ActivationDesc(int64_t batch, int64_t channels, const Dims& spatial) {
  Dims dims{batch, channels};
  dims.insert(dims.end(), spatial.begin(), spatial.end());
  return memory::desc(dims, memory::data_type::f32, ChannelsLast(spatial.size()));
}

// Logical oneDNN weight dims: {O, I, *window}, or {G, O/G, I/G, *window} with groups.
Dims WeightDims(const Geometry& g) {
  Dims dims;
  if (g.groups > 1) dims.push_back(g.groups);
  dims.push_back(g.out_channels / g.groups);
  dims.push_back(g.in_channels / g.groups);
  dims.insert(dims.end(), g.window.begin(), g.window.end());
  return dims;
}

// jaxcnn's (*window, C_in / groups, C_out) layout as strides over WeightDims.
memory::desc UserWeightDesc(const Geometry& g) {
  const int64_t cin_g = g.in_channels / g.groups, cout = g.out_channels, cout_g = cout / g.groups;
  Dims strides;
  if (g.groups > 1) strides.push_back(cout_g);
  strides.push_back(1);
  strides.push_back(cout);
  Dims window_strides(g.window.size());
  int64_t step = cin_g * cout;
  for (size_t k = g.window.size(); k-- > 0;) {
    window_strides[k] = step;
    step *= g.window[k];
  }
  strides.insert(strides.end(), window_strides.begin(), window_strides.end());
  return memory::desc(WeightDims(g), memory::data_type::f32, strides);
}

memory::desc AnyWeightDesc(const Geometry& g) {
  return memory::desc(WeightDims(g), memory::data_type::f32, memory::format_tag::any);
}

Dims OneDnnDilation(const Dims& dilation) {  // oneDNN counts the inserted gaps: 0 = dense
  Dims result;
  for (int64_t d : dilation) result.push_back(d - 1);
  return result;
}

dnnl::primitive_attr UserScratchpad() {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return attr;
}

dnnl::convolution_forward::primitive_desc ForwardDesc(const Geometry& g, bool with_bias) {
  memory::desc src = ActivationDesc(g.batch, g.in_channels, g.in_spatial);
  memory::desc dst = ActivationDesc(g.batch, g.out_channels, g.out_spatial);
  memory::desc weights = AnyWeightDesc(g);
  Dims dilation = OneDnnDilation(g.dilation);
  if (with_bias) {
    memory::desc bias({g.out_channels}, memory::data_type::f32, memory::format_tag::a);
    return dnnl::convolution_forward::primitive_desc(
        Engine(), dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct, src, weights, bias,
        dst, g.stride, dilation, g.pad_lo, g.pad_hi, UserScratchpad());
  }
  return dnnl::convolution_forward::primitive_desc(
      Engine(), dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct, src, weights, dst,
      g.stride, dilation, g.pad_lo, g.pad_hi, UserScratchpad());
}

// One cached pass: the primitive, the weight layout it wants, and the reorder between
// that layout and jaxcnn's (absent when they coincide).
struct Pass {
  dnnl::primitive primitive;
  memory::desc user_weights, primitive_weights;
  std::unique_ptr<dnnl::reorder> weight_reorder;
  memory::desc scratchpad;
};

enum PassKind { kForward = 0, kForwardBias = 1, kBackwardData = 2, kBackwardWeights = 3 };

std::unique_ptr<Pass> CreatePass(const Geometry& g, PassKind kind) {
  auto pass = std::make_unique<Pass>();
  pass->user_weights = UserWeightDesc(g);
  auto forward = ForwardDesc(g, kind == kForwardBias);
  memory::desc src = ActivationDesc(g.batch, g.in_channels, g.in_spatial);
  memory::desc dst = ActivationDesc(g.batch, g.out_channels, g.out_spatial);
  Dims dilation = OneDnnDilation(g.dilation);
  if (kind == kForward || kind == kForwardBias) {
    pass->primitive = dnnl::convolution_forward(forward);
    pass->primitive_weights = forward.weights_desc();
    pass->scratchpad = forward.scratchpad_desc();
  } else if (kind == kBackwardData) {
    dnnl::convolution_backward_data::primitive_desc desc(
        Engine(), dnnl::algorithm::convolution_direct, src, AnyWeightDesc(g), dst, g.stride, dilation, g.pad_lo,
        g.pad_hi, forward, UserScratchpad());
    pass->primitive = dnnl::convolution_backward_data(desc);
    pass->primitive_weights = desc.weights_desc();
    pass->scratchpad = desc.scratchpad_desc();
  } else {
    dnnl::convolution_backward_weights::primitive_desc desc(
        Engine(), dnnl::algorithm::convolution_direct, src, AnyWeightDesc(g), dst, g.stride, dilation, g.pad_lo,
        g.pad_hi, forward, UserScratchpad());
    pass->primitive = dnnl::convolution_backward_weights(desc);
    pass->primitive_weights = desc.diff_weights_desc();
    pass->scratchpad = desc.scratchpad_desc();
  }
  if (pass->primitive_weights != pass->user_weights) {
    // A kernel's weights are a few thousand floats: their reorder runs on one thread, since an
    // OpenMP team's start and barrier cost more than the copy (far more while other work keeps
    // the cores busy and the team waits for its threads to be scheduled). oneDNN fixes a
    // reorder's thread count when it is created, from this thread's OpenMP setting.
    const int threads = omp_get_max_threads();
    omp_set_num_threads(1);
    const bool out = kind == kBackwardWeights;
    pass->weight_reorder = std::make_unique<dnnl::reorder>(dnnl::reorder::primitive_desc(
        Engine(), out ? pass->primitive_weights : pass->user_weights, Engine(),
        out ? pass->user_weights : pass->primitive_weights));
    omp_set_num_threads(threads);
  }
  return pass;
}

const Pass& CachedPass(const Geometry& g, PassKind kind) {
  static std::mutex mutex;
  static std::unordered_map<std::string, std::unique_ptr<Pass>> cache;
  std::string key = g.Key(kind);
  std::lock_guard<std::mutex> lock(mutex);
  auto found = cache.find(key);
  if (found == cache.end()) found = cache.emplace(key, CreatePass(g, kind)).first;
  return *found->second;
}

// A growing per-thread buffer (scratchpad, reordered weights): no allocation per call.
void* ThreadBuffer(std::vector<char>& buffer, size_t bytes) {
  if (buffer.size() < bytes + 64) buffer.resize(bytes + 64);
  auto address = reinterpret_cast<std::uintptr_t>(buffer.data());
  return buffer.data() + ((64 - address % 64) % 64);
}

Geometry ReadGeometry(ffi::Span<const int64_t> x_dims, ffi::Span<const int64_t> w_dims,
                      ffi::Span<const int64_t> y_dims, ffi::Span<const int64_t> stride,
                      ffi::Span<const int64_t> dilation, ffi::Span<const int64_t> padding_lo,
                      ffi::Span<const int64_t> padding_hi, int64_t groups) {
  const size_t rank = x_dims.size() - 2;
  Geometry g;
  g.batch = x_dims[0];
  g.in_channels = x_dims[rank + 1];
  g.out_channels = w_dims[rank + 1];
  g.groups = groups;
  g.in_spatial = Dims(x_dims.begin() + 1, x_dims.begin() + 1 + rank);
  g.out_spatial = Dims(y_dims.begin() + 1, y_dims.begin() + 1 + rank);
  g.window = Dims(w_dims.begin(), w_dims.begin() + rank);
  g.stride = ToDims(stride);
  g.dilation = ToDims(dilation);
  g.pad_lo = ToDims(padding_lo);
  g.pad_hi = ToDims(padding_hi);
  return g;
}

ffi::Error CheckRanks(size_t x_rank, size_t w_rank, size_t y_rank, size_t attr_rank) {
  if (x_rank < 3 || x_rank > 5 || w_rank != x_rank || y_rank != x_rank || attr_rank != x_rank - 2) {
    return ffi::Error::InvalidArgument("jaxcnn oneDNN conv: operands must be 1-D/2-D/3-D channels-last with one "
                                       "stride/dilation/padding entry per spatial dimension");
  }
  return ffi::Error::Success();
}

// One primitive at a time, each on all of OpenMP's threads. XLA runs independent custom calls (a
// layer's backward data and backward weights) on two of its threads at once; each would start an
// OpenMP team of its own, and twice as many threads as cores would compete for them.
std::mutex& ExecutionMutex() {
  static std::mutex mutex;
  return mutex;
}

// Runs one pass; `weights` is read (forward, backward data) or written (backward weights).
ffi::Error Execute(const Geometry& g, PassKind kind, void* x, void* weights, void* bias, void* y) {
  try {
    const Pass& pass = CachedPass(g, kind);
    std::lock_guard<std::mutex> serial(ExecutionMutex());
    thread_local std::vector<char> scratch_buffer, weight_buffer;
    thread_local dnnl::stream stream(Engine());
    memory user_weights(pass.user_weights, Engine(), weights);
    memory primitive_weights = user_weights;
    if (pass.weight_reorder) {
      primitive_weights = memory(pass.primitive_weights, Engine(),
                                 ThreadBuffer(weight_buffer, pass.primitive_weights.get_size()));
      if (kind != kBackwardWeights) pass.weight_reorder->execute(stream, user_weights, primitive_weights);
    }
    memory src(ActivationDesc(g.batch, g.in_channels, g.in_spatial), Engine(), x);
    memory dst(ActivationDesc(g.batch, g.out_channels, g.out_spatial), Engine(), y);
    std::unordered_map<int, memory> args;
    if (size_t bytes = pass.scratchpad.get_size()) {
      args.insert({DNNL_ARG_SCRATCHPAD, memory(pass.scratchpad, Engine(), ThreadBuffer(scratch_buffer, bytes))});
    }
    if (kind == kForward || kind == kForwardBias) {
      args.insert({{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, primitive_weights}, {DNNL_ARG_DST, dst}});
      if (kind == kForwardBias) {
        args.insert({DNNL_ARG_BIAS, memory({{g.out_channels}, memory::data_type::f32, memory::format_tag::a},
                                           Engine(), bias)});
      }
    } else if (kind == kBackwardData) {
      args.insert({{DNNL_ARG_DIFF_SRC, src}, {DNNL_ARG_WEIGHTS, primitive_weights}, {DNNL_ARG_DIFF_DST, dst}});
    } else {
      args.insert({{DNNL_ARG_SRC, src}, {DNNL_ARG_DIFF_WEIGHTS, primitive_weights}, {DNNL_ARG_DIFF_DST, dst}});
    }
    pass.primitive.execute(stream, args);
    if (kind == kBackwardWeights && pass.weight_reorder) {
      pass.weight_reorder->execute(stream, primitive_weights, user_weights);
    }
    stream.wait();
  } catch (const dnnl::error& error) {
    return ffi::Error::Internal(std::string("oneDNN: ") + error.what());
  } catch (const std::exception& error) {
    return ffi::Error::Internal(std::string("jaxcnn oneDNN conv: ") + error.what());
  }
  return ffi::Error::Success();
}

using F32 = ffi::Buffer<ffi::F32>;
using F32Result = ffi::ResultBuffer<ffi::F32>;
using Ints = ffi::Span<const int64_t>;

ffi::Error Forward(F32 x, F32 w, F32 b, F32Result y, Ints stride, Ints dilation, Ints padding_lo,
                   Ints padding_hi, int64_t groups, int64_t with_bias) {
  ffi::Error ranks = CheckRanks(x.dimensions().size(), w.dimensions().size(), y->dimensions().size(),
                                stride.size());
  if (ranks.failure()) return ranks;
  Geometry g = ReadGeometry(x.dimensions(), w.dimensions(), y->dimensions(), stride, dilation, padding_lo,
                            padding_hi, groups);
  return Execute(g, with_bias ? kForwardBias : kForward, x.untyped_data(), w.untyped_data(), b.untyped_data(),
                 y->untyped_data());
}

ffi::Error BackwardData(F32 dy, F32 w, F32Result dx, Ints stride, Ints dilation, Ints padding_lo,
                        Ints padding_hi, int64_t groups) {
  ffi::Error ranks = CheckRanks(dx->dimensions().size(), w.dimensions().size(), dy.dimensions().size(),
                                stride.size());
  if (ranks.failure()) return ranks;
  Geometry g = ReadGeometry(dx->dimensions(), w.dimensions(), dy.dimensions(), stride, dilation, padding_lo,
                            padding_hi, groups);
  return Execute(g, kBackwardData, dx->untyped_data(), w.untyped_data(), nullptr, dy.untyped_data());
}

ffi::Error BackwardWeights(F32 dy, F32 x, F32Result dw, Ints stride, Ints dilation, Ints padding_lo,
                           Ints padding_hi, int64_t groups) {
  ffi::Error ranks = CheckRanks(x.dimensions().size(), dw->dimensions().size(), dy.dimensions().size(),
                                stride.size());
  if (ranks.failure()) return ranks;
  Geometry g = ReadGeometry(x.dimensions(), dw->dimensions(), dy.dimensions(), stride, dilation, padding_lo,
                            padding_hi, groups);
  return Execute(g, kBackwardWeights, x.untyped_data(), dw->untyped_data(), nullptr, dy.untyped_data());
}

}  // namespace

#define JAXCNN_CONV_ATTRS                        \
  .Attr<Ints>("stride")                          \
      .Attr<Ints>("dilation")                    \
      .Attr<Ints>("padding_lo")                  \
      .Attr<Ints>("padding_hi")                  \
      .Attr<int64_t>("groups")

XLA_FFI_DEFINE_HANDLER_SYMBOL(jaxcnn_onednn_conv_forward, Forward,
                              ffi::Ffi::Bind().Arg<F32>().Arg<F32>().Arg<F32>().Ret<F32>()
                                  JAXCNN_CONV_ATTRS.Attr<int64_t>("with_bias"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(jaxcnn_onednn_conv_backward_data, BackwardData,
                              ffi::Ffi::Bind().Arg<F32>().Arg<F32>().Ret<F32>() JAXCNN_CONV_ATTRS);

XLA_FFI_DEFINE_HANDLER_SYMBOL(jaxcnn_onednn_conv_backward_weights, BackwardWeights,
                              ffi::Ffi::Bind().Arg<F32>().Arg<F32>().Ret<F32>() JAXCNN_CONV_ATTRS);
