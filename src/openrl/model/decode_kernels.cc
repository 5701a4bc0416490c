#include "openrl/model/decode_kernels.h"

#include <ATen/Parallel.h>
#include <ATen/record_function.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

// The kernels below use GCC vector types (16 floats); their clones are compiled per ISA level.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi"  // the vector type only lives inside inlined helpers
#endif
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11 && defined(__x86_64__)  // x86-64-vN: GCC 11
#define OPENRL_ISA_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define OPENRL_ISA_CLONES
#endif
#define OPENRL_ALWAYS_INLINE inline __attribute__((always_inline))

namespace openrl::model::decode {
namespace {

constexpr int64_t kLanes = 16;
typedef float Vec __attribute__((vector_size(kLanes * sizeof(float))));

OPENRL_ALWAYS_INLINE Vec Load(const float* p) {
  Vec v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
OPENRL_ALWAYS_INLINE void Store(float* p, Vec v) { std::memcpy(p, &v, sizeof v); }
OPENRL_ALWAYS_INLINE Vec Splat(float x) { return Vec{} + x; }

// n rounded up to whole vectors (score rows are padded with masked slots to that length).
constexpr int64_t RoundUpToVectors(int64_t n) { return (n + kLanes - 1) / kLanes * kLanes; }

typedef int32_t IVec __attribute__((vector_size(kLanes * sizeof(int32_t))));

// e^x per lane, within about 1 ulp of expf for x in [-87.3, 88.3] (inputs are clamped there):
// e^x = 2^n·e^r with n = round(x·log2 e) and |r| ≤ ln2/2, e^r by its degree-7 Taylor-like
// polynomial (Cephes' expf coefficients), 2^n built in the exponent bits.
OPENRL_ALWAYS_INLINE Vec Exp(Vec x) {
  x = x < Splat(-87.3f) ? Splat(-87.3f) : x;
  x = x > Splat(88.3f) ? Splat(88.3f) : x;
  Vec fx = x * 1.44269504088896341f + 0.5f;
  Vec n = __builtin_convertvector(__builtin_convertvector(fx, IVec), Vec);
  n = n > fx ? n - 1.0f : n;  // floor
  x = x - n * 0.693359375f + n * 2.12194440e-4f;
  Vec y = Splat(1.9875691500e-4f);
  y = y * x + 1.3981999507e-3f;
  y = y * x + 8.3334519073e-3f;
  y = y * x + 4.1665795894e-2f;
  y = y * x + 1.6666665459e-1f;
  y = y * x + 5.0000001201e-1f;
  y = y * (x * x) + x + 1.0f;
  IVec bits = (__builtin_convertvector(n, IVec) + 127) << 23;
  Vec scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return y * scale;
}

OPENRL_ALWAYS_INLINE float Dot(const float* a, const float* b, int64_t n) {
  Vec acc{};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) acc += Load(a + i) * Load(b + i);
  float s = 0;
  for (int64_t l = 0; l < kLanes; ++l) s += acc[l];
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

// y += alpha·x
OPENRL_ALWAYS_INLINE void Axpy(float* y, float alpha, const float* x, int64_t n) {
  Vec va = Splat(alpha);
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) Store(y + i, Load(y + i) + va * Load(x + i));
  for (; i < n; ++i) y[i] += alpha * x[i];
}

// out = (x·r)·w or (x·r)·(1 + w), r = rsqrt(mean(x²) + eps): Transformer::RmsNorm's order.
OPENRL_ALWAYS_INLINE void NormRow(float* out, const float* x, const float* w, int64_t n, float eps,
                                  bool one_plus) {
  float r = 1.0f / std::sqrt(Dot(x, x, n) / static_cast<float>(n) + eps);
  Vec vr = Splat(r), one = Splat(one_plus ? 1.0f : 0.0f);
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) Store(out + i, (Load(x + i) * vr) * (Load(w + i) + one));
  for (; i < n; ++i) out[i] = (x[i] * r) * (one_plus ? 1.0f + w[i] : w[i]);
}

// x·cos + rotate_half(x)·sin of one head (rotate_half(x) = [-x2, x1]), from src into dst.
OPENRL_ALWAYS_INLINE void RopeHead(float* dst, const float* src, const float* cos, const float* sin,
                                   int64_t hd) {
  int64_t half = hd / 2, i = 0;
  for (; i + kLanes <= half; i += kLanes) {
    Vec x1 = Load(src + i), x2 = Load(src + half + i);
    Store(dst + i, x1 * Load(cos + i) + (-x2) * Load(sin + i));
    Store(dst + half + i, x2 * Load(cos + half + i) + x1 * Load(sin + half + i));
  }
  for (; i < half; ++i) {
    float x1 = src[i], x2 = src[half + i];
    dst[i] = x1 * cos[i] + (-x2) * sin[i];
    dst[half + i] = x2 * cos[half + i] + x1 * sin[half + i];
  }
}

OPENRL_ISA_CLONES void NormRows(float* out, const float* x, const float* w, int64_t begin, int64_t end,
                                int64_t n, float eps, bool one_plus) {
  for (int64_t r = begin; r < end; ++r) NormRow(out + r * n, x + r * n, w, n, eps, one_plus);
}

OPENRL_ISA_CLONES void AddNormRows(float* out, float* h, const float* a, const float* post, const float* next,
                                   int64_t begin, int64_t end, int64_t n, float eps, bool one_plus,
                                   float* tmp) {
  for (int64_t r = begin; r < end; ++r) {
    float* hr = h + r * n;
    const float* add = a + r * n;
    if (post != nullptr) {
      NormRow(tmp, add, post, n, eps, one_plus);
      add = tmp;
    }
    Axpy(hr, 1.0f, add, n);
    NormRow(out + r * n, hr, next, n, eps, one_plus);
  }
}

OPENRL_ISA_CLONES void SiluMulRows(float* out, const float* gu, int64_t begin, int64_t end, int64_t ff) {
  for (int64_t r = begin; r < end; ++r) {
    const float *g = gu + r * 2 * ff, *u = g + ff;
    float* o = out + r * ff;
    int64_t i = 0;
    for (; i + kLanes <= ff; i += kLanes) {
      Vec x = Load(g + i);
      Store(o + i, x / (1.0f + Exp(-x)) * Load(u + i));
    }
    for (; i < ff; ++i) o[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
  }
}

struct AttentionTask {
  const AttentionShape* shape;
  const float *qkv, *cos, *sin, *q_norm, *k_norm;
  float *keys, *values, *out;
  const bool* valid;
  int64_t qkv_row, valid_row, slot;
  int64_t k_strides[3], v_strides[3];  // batch, kv head, slot
};

// One row's group of query heads that share key/value head g: writes that head's key and value
// into the cache, then attends for each query head of the group. scratch: G·hd query values,
// G rows of slot + 1 scores (padded to whole vectors), hd for a head being normed.
OPENRL_ISA_CLONES void AttendGroup(const AttentionTask& t, int64_t b, int64_t g, float* scratch) {
  const AttentionShape& s = *t.shape;
  const int64_t hd = s.head_dim, G = s.heads / s.kv_heads, S = t.slot + 1;
  const float eps = static_cast<float>(s.norm_eps);
  const float* row = t.qkv + b * t.qkv_row;
  const float *cos = t.cos + b * hd, *sin = t.sin + b * hd;
  float* q = scratch;
  float* scores = q + G * hd;
  const int64_t padded = RoundUpToVectors(S);
  float* normed = scores + G * padded;
  float* keys = t.keys + b * t.k_strides[0] + g * t.k_strides[1];
  float* values = t.values + b * t.v_strides[0] + g * t.v_strides[1];
  // The new key (normed, rotated) and value go to the cache first: the row attends to itself.
  const float* k_src = row + (s.heads + g) * hd;
  if (t.k_norm != nullptr) {
    NormRow(normed, k_src, t.k_norm, hd, eps, s.one_plus_norm);
    k_src = normed;
  }
  RopeHead(keys + t.slot * t.k_strides[2], k_src, cos, sin, hd);
  std::memcpy(values + t.slot * t.v_strides[2], row + (s.heads + s.kv_heads + g) * hd, sizeof(float) * hd);
  for (int64_t h = 0; h < G; ++h) {
    const float* q_src = row + (g * G + h) * hd;
    if (t.q_norm != nullptr) {
      NormRow(normed, q_src, t.q_norm, hd, eps, s.one_plus_norm);
      q_src = normed;
    }
    RopeHead(q + h * hd, q_src, cos, sin, hd);
  }
  // Scores of the slots the row sees: real ones (inside the window on a local layer) and its own.
  const bool* valid = t.valid + b * t.valid_row;
  const int64_t first = s.window ? std::max<int64_t>(0, t.slot - *s.window + 1) : 0;
  const float scale = static_cast<float>(s.scale);
  const float cap = s.softcap ? static_cast<float>(*s.softcap) : 0.0f;
  constexpr float kMasked = -std::numeric_limits<float>::infinity();
  for (int64_t j = 0; j < S; ++j) {
    bool seen = j == t.slot || (j >= first && valid[j]);
    const float* k = keys + j * t.k_strides[2];
    for (int64_t h = 0; h < G; ++h) {
      float v = kMasked;
      if (seen) {
        v = Dot(q + h * hd, k, hd) * scale;
        if (s.softcap) v = std::tanh(v / cap) * cap;
      }
      scores[h * padded + j] = v;
    }
  }
  for (int64_t h = 0; h < G; ++h) {
    float* p = scores + h * padded;
    for (int64_t j = S; j < padded; ++j) p[j] = kMasked;
    float m = kMasked;
    for (int64_t j = 0; j < S; ++j) m = std::max(m, p[j]);
    Vec sum{};
    for (int64_t j = 0; j < padded; j += kLanes) {
      Vec x = Load(p + j);
      Vec e = x == Splat(kMasked) ? Splat(0.0f) : Exp(x - m);
      Store(p + j, e);
      sum += e;
    }
    float total = 0;
    for (int64_t l = 0; l < kLanes; ++l) total += sum[l];
    Vec inv = Splat(1.0f / total);
    for (int64_t j = 0; j < padded; j += kLanes) Store(p + j, Load(p + j) * inv);
  }
  // out = Σ_j p_j·v_j for each head of the group, each value row read once.
  float* out = t.out + b * s.heads * hd + g * G * hd;
  std::memset(out, 0, sizeof(float) * G * hd);
  for (int64_t j = 0; j < S; ++j) {
    const float* v = values + j * t.v_strides[2];
    for (int64_t h = 0; h < G; ++h)
      if (float p = scores[h * padded + j]; p != 0.0f) Axpy(out + h * hd, p, v, hd);
  }
}

void CheckRows(const at::Tensor& t, const char* name, int64_t rows, int64_t cols) {
  if (t.scalar_type() != at::kFloat || !t.device().is_cpu() || t.dim() != 2 || t.size(0) != rows ||
      t.size(1) != cols)
    throw std::invalid_argument(std::string("decode kernels: ") + name + " must be fp32 on CPU of shape (" +
                                std::to_string(rows) + ", " + std::to_string(cols) + "), got " +
                                c10::toString(t.scalar_type()) + " " + c10::str(t.sizes()));
}

void CheckVector(const at::Tensor& t, const char* name, int64_t n) {
  if (t.scalar_type() != at::kFloat || !t.device().is_cpu() || t.dim() != 1 || t.size(0) != n)
    throw std::invalid_argument(std::string("decode kernels: ") + name + " must be fp32 on CPU of shape (" +
                                std::to_string(n) + "), got " + c10::toString(t.scalar_type()) + " " +
                                c10::str(t.sizes()));
}

// Rows per task so that small batches run on the calling thread.
int64_t RowGrain(int64_t n) { return std::max<int64_t>(1, 32768 / std::max<int64_t>(1, n)); }

}  // namespace

at::Tensor RmsNorm(const at::Tensor& x, const at::Tensor& w, double eps, bool one_plus) {
  RECORD_FUNCTION("openrl::decode::RmsNorm", std::vector<c10::IValue>({x}));
  int64_t n = x.size(-1), rows = x.numel() / std::max<int64_t>(1, n);
  at::Tensor xc = x.contiguous().view({rows, n}), wc = w.contiguous();
  CheckRows(xc, "x", rows, n);
  CheckVector(wc, "norm weight", n);
  at::Tensor out = at::empty_like(xc);
  at::parallel_for(0, rows, RowGrain(n), [&](int64_t begin, int64_t end) {
    NormRows(out.data_ptr<float>(), xc.data_ptr<float>(), wc.data_ptr<float>(), begin, end, n,
             static_cast<float>(eps), one_plus);
  });
  return out.view(x.sizes());
}

at::Tensor AddRmsNorm(at::Tensor& h, const at::Tensor& a, const at::Tensor& post, const at::Tensor& next,
                      double eps, bool one_plus) {
  RECORD_FUNCTION("openrl::decode::AddRmsNorm", std::vector<c10::IValue>({h}));
  int64_t n = h.size(-1), rows = h.numel() / std::max<int64_t>(1, n);
  if (!h.is_contiguous())
    throw std::invalid_argument("decode kernels: the residual stream must be contiguous");
  at::Tensor hv = h.view({rows, n}), ac = a.contiguous().view({rows, n}), nc = next.contiguous();
  at::Tensor pc = post.defined() ? post.contiguous() : at::Tensor();
  CheckRows(hv, "residual", rows, n);
  CheckRows(ac, "residual input", rows, n);
  CheckVector(nc, "norm weight", n);
  if (pc.defined()) CheckVector(pc, "post-norm weight", n);
  at::Tensor out = at::empty_like(hv);
  at::parallel_for(0, rows, RowGrain(n), [&](int64_t begin, int64_t end) {
    std::vector<float> tmp(static_cast<size_t>(pc.defined() ? n : 0));
    AddNormRows(out.data_ptr<float>(), hv.data_ptr<float>(), ac.data_ptr<float>(),
                pc.defined() ? pc.data_ptr<float>() : nullptr, nc.data_ptr<float>(), begin, end, n,
                static_cast<float>(eps), one_plus, tmp.data());
  });
  return out.view(h.sizes());
}

at::Tensor SiluMul(const at::Tensor& gu) {
  RECORD_FUNCTION("openrl::decode::SiluMul", std::vector<c10::IValue>({gu}));
  int64_t two_ff = gu.size(-1), rows = gu.numel() / std::max<int64_t>(1, two_ff), ff = two_ff / 2;
  at::Tensor gc = gu.contiguous().view({rows, two_ff});
  CheckRows(gc, "gate|up", rows, 2 * ff);
  std::vector<int64_t> sizes = gu.sizes().vec();
  sizes.back() = ff;
  at::Tensor out = at::empty({rows, ff}, gc.options());
  at::parallel_for(0, rows, RowGrain(ff), [&](int64_t begin, int64_t end) {
    SiluMulRows(out.data_ptr<float>(), gc.data_ptr<float>(), begin, end, ff);
  });
  return out.view(sizes);
}

at::Tensor Attention(const AttentionShape& shape, const at::Tensor& qkv, const at::Tensor& cos,
                     const at::Tensor& sin, at::Tensor& keys, at::Tensor& values, const at::Tensor& valid,
                     int64_t slot) {
  RECORD_FUNCTION("openrl::decode::Attention", std::vector<c10::IValue>({qkv, keys}));
  const int64_t hd = shape.head_dim, Hq = shape.heads, Hkv = shape.kv_heads, B = qkv.size(0);
  if (hd <= 0 || hd % 2 != 0 || Hkv <= 0 || Hq % Hkv != 0)
    throw std::invalid_argument("decode kernels: need an even head_dim and heads a multiple of kv_heads");
  at::Tensor qc = qkv.contiguous().view({B, -1}), cc = cos.contiguous().view({B, -1}),
             sc = sin.contiguous().view({B, -1});
  CheckRows(qc, "qkv", B, (Hq + 2 * Hkv) * hd);
  CheckRows(cc, "cos", B, hd);
  CheckRows(sc, "sin", B, hd);
  for (const at::Tensor* c : {&keys, &values}) {
    if (c->scalar_type() != at::kFloat || !c->device().is_cpu() || c->dim() != 4 || c->size(0) != B ||
        c->size(1) != Hkv || c->size(2) <= slot || c->size(3) != hd || c->stride(3) != 1)
      throw std::invalid_argument(
          "decode kernels: the cache must be fp32 (B, kv_heads, > slot, head_dim), got " +
          c10::str(c->sizes()));
  }
  if (valid.scalar_type() != at::kBool || valid.dim() != 2 || valid.size(0) != B || valid.size(1) <= slot ||
      valid.stride(1) != 1)
    throw std::invalid_argument("decode kernels: valid must be bool (B, > slot) with unit column stride");
  if (shape.q_norm.defined()) CheckVector(shape.q_norm, "q_norm", hd);
  if (shape.k_norm.defined()) CheckVector(shape.k_norm, "k_norm", hd);
  at::Tensor out = at::empty({B, Hq * hd}, qc.options());
  AttentionTask t{&shape,
                  qc.data_ptr<float>(),
                  cc.data_ptr<float>(),
                  sc.data_ptr<float>(),
                  shape.q_norm.defined() ? shape.q_norm.data_ptr<float>() : nullptr,
                  shape.k_norm.defined() ? shape.k_norm.data_ptr<float>() : nullptr,
                  keys.data_ptr<float>(),
                  values.data_ptr<float>(),
                  out.data_ptr<float>(),
                  valid.data_ptr<bool>(),
                  qc.stride(0),
                  valid.stride(0),
                  slot,
                  {keys.stride(0), keys.stride(1), keys.stride(2)},
                  {values.stride(0), values.stride(1), values.stride(2)}};
  const int64_t G = Hq / Hkv, scratch = G * hd + G * RoundUpToVectors(slot + 1) + hd;
  at::parallel_for(0, B * Hkv, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> buf(static_cast<size_t>(scratch));
    for (int64_t task = begin; task < end; ++task) AttendGroup(t, task / Hkv, task % Hkv, buf.data());
  });
  return out;
}

}  // namespace openrl::model::decode
