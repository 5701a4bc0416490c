// The fused decode kernels against the ATen formulas they replace (Transformer::RmsNorm, RoPE,
// the cache write and masked attention), on head sizes that take the vector loops, their tails
// and the scalar path, with grouped-query heads, padding slots, sliding windows and soft-capping.
#include "openrl/model/decode_kernels.h"

#include <gtest/gtest.h>

#include <string>

namespace openrl::model::decode {
namespace {

double MaxErr(const at::Tensor& a, const at::Tensor& b) { return (a - b).abs().max().item<double>(); }

at::Tensor RefNorm(const at::Tensor& x, const at::Tensor& w, double eps, bool one_plus) {
  at::Tensor normed = x * at::rsqrt(x.pow(2).mean(-1, true) + eps);
  return one_plus ? normed * (1.0 + w) : w * normed;
}

at::Tensor RefRope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  int64_t half = x.size(-1) / 2;
  at::Tensor rotated = at::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
  return x * cos + rotated * sin;
}

TEST(DecodeKernels, RmsNormMatchesTheFormula) {
  at::manual_seed(1);
  for (int64_t n : {37, 64, 576}) {
    for (bool one_plus : {false, true}) {
      SCOPED_TRACE("n " + std::to_string(n) + (one_plus ? " (1+w)" : " w"));
      at::Tensor x = at::randn({5, n}) * 3, w = at::randn({n});
      EXPECT_LT(MaxErr(RmsNorm(x, w, 1e-6, one_plus), RefNorm(x, w, 1e-6, one_plus)), 1e-5);
      // (B, 1, n) keeps its shape.
      EXPECT_EQ(RmsNorm(x.view({5, 1, n}), w, 1e-6, one_plus).sizes(), (std::vector<int64_t>{5, 1, n}));
    }
  }
}

TEST(DecodeKernels, AddRmsNormUpdatesTheResidualAndNormsIt) {
  at::manual_seed(2);
  for (bool gemma : {false, true}) {
    SCOPED_TRACE(gemma ? "post-norm (Gemma)" : "plain residual");
    int64_t n = 72;
    at::Tensor h = at::randn({4, n}), a = at::randn({4, n}) * 2, post = at::randn({n}), next = at::randn({n});
    at::Tensor want_h = gemma ? h + RefNorm(a, post, 1e-5, true) : h + a;
    at::Tensor want = RefNorm(want_h, next, 1e-5, gemma);
    at::Tensor got = AddRmsNorm(h, a, gemma ? post : at::Tensor(), next, 1e-5, gemma);
    EXPECT_LT(MaxErr(h, want_h), 1e-5);
    EXPECT_LT(MaxErr(got, want), 1e-5);
  }
}

TEST(DecodeKernels, SiluMulMatchesTheFormula) {
  at::manual_seed(4);
  for (int64_t ff : {7, 48, 1536}) {
    SCOPED_TRACE("ff " + std::to_string(ff));
    at::Tensor gu = at::randn({3, 1, 2 * ff}) * 6;  // wide enough to reach the exponential's clamps
    gu[0][0][0] = 95.0f;
    gu[0][0][1] = -95.0f;
    auto parts = gu.split_with_sizes({ff, ff}, -1);
    at::Tensor want = at::silu(parts[0]) * parts[1];
    at::Tensor got = SiluMul(gu);
    EXPECT_EQ(got.sizes(), want.sizes());
    EXPECT_LT(((got - want).abs() / (want.abs() + 1e-3)).max().item<double>(), 1e-5);
  }
}

struct Case {
  int64_t heads, kv_heads, head_dim;
  bool qk_norm, one_plus;
  std::optional<int64_t> window;
  std::optional<double> softcap;
};

void CheckAttention(const Case& c) {
  SCOPED_TRACE("heads " + std::to_string(c.heads) + "/" + std::to_string(c.kv_heads) + " hd " +
               std::to_string(c.head_dim) + (c.window ? " window " + std::to_string(*c.window) : "") +
               (c.softcap ? " softcap" : "") + (c.qk_norm ? " qk-norm" : ""));
  at::manual_seed(7);
  const int64_t B = 3, cap = 24, slot = 13, hd = c.head_dim, Hq = c.heads, Hkv = c.kv_heads;
  AttentionShape s;
  s.heads = Hq;
  s.kv_heads = Hkv;
  s.head_dim = hd;
  s.scale = 1.0 / std::sqrt(static_cast<double>(hd));
  s.norm_eps = 1e-6;
  s.one_plus_norm = c.one_plus;
  s.window = c.window;
  s.softcap = c.softcap;
  if (c.qk_norm) {
    s.q_norm = at::randn({hd});
    s.k_norm = at::randn({hd});
  }
  at::Tensor qkv = at::randn({B, (Hq + 2 * Hkv) * hd});
  at::Tensor angles = at::rand({B, hd / 2}) * 6;
  at::Tensor cos = at::cat({angles, angles}, -1).cos(), sin = at::cat({angles, angles}, -1).sin();
  at::Tensor keys = at::randn({B, Hkv, cap, hd}), values = at::randn({B, Hkv, cap, hd});
  at::Tensor valid = at::ones({B, cap}, at::kBool);
  valid[1].narrow(0, 0, 5).fill_(false);  // left padding
  valid[2].narrow(0, 2, 3).fill_(false);  // holes (a joined row's padding)
  valid[2][slot] = false;                 // a padded decode position still sees itself
  at::Tensor keys0 = keys.clone(), values0 = values.clone();

  at::Tensor got = Attention(s, qkv, cos, sin, keys, values, valid, slot);

  // Reference: split, norm, rotate, write the cache, masked softmax attention.
  auto parts = qkv.split_with_sizes({Hq * hd, Hkv * hd, Hkv * hd}, -1);
  at::Tensor q = parts[0].view({B, Hq, hd}), k = parts[1].view({B, Hkv, hd}), v = parts[2].view({B, Hkv, hd});
  if (c.qk_norm) {
    q = RefNorm(q, s.q_norm, 1e-6, c.one_plus);
    k = RefNorm(k, s.k_norm, 1e-6, c.one_plus);
  }
  q = RefRope(q, cos.view({B, 1, hd}), sin.view({B, 1, hd}));
  k = RefRope(k, cos.view({B, 1, hd}), sin.view({B, 1, hd}));
  keys0.select(2, slot).copy_(k);
  values0.select(2, slot).copy_(v);
  EXPECT_LT(MaxErr(keys, keys0), 1e-5);
  EXPECT_TRUE(at::equal(values, values0));  // the value is copied as it is
  at::Tensor kk = keys0.narrow(2, 0, slot + 1).repeat_interleave(Hq / Hkv, 1);  // (B, Hq, S, hd)
  at::Tensor vv = values0.narrow(2, 0, slot + 1).repeat_interleave(Hq / Hkv, 1);
  at::Tensor scores = at::matmul(q.unsqueeze(2), kk.transpose(2, 3)).squeeze(2) * s.scale;  // (B, Hq, S)
  if (c.softcap) scores = at::tanh(scores / *c.softcap) * *c.softcap;
  at::Tensor slots = at::arange(slot + 1);
  at::Tensor seen = valid.narrow(1, 0, slot + 1);
  if (c.window) seen = seen & (slots > slot - *c.window).view({1, -1});
  seen = seen | (slots == slot).view({1, -1});
  scores = scores.masked_fill(seen.logical_not().view({B, 1, -1}), -INFINITY);
  at::Tensor want = at::matmul(at::softmax(scores, -1).unsqueeze(2), vv).squeeze(2).reshape({B, Hq * hd});
  EXPECT_LT(MaxErr(got, want), 1e-5);
  EXPECT_GT(want.abs().max().item<double>(), 0.1);
}

TEST(DecodeKernels, AttentionMatchesTheReference) {
  CheckAttention({4, 2, 8, false, false, std::nullopt, std::nullopt});   // scalar path
  CheckAttention({8, 4, 64, false, false, std::nullopt, std::nullopt});  // vector loops only
  CheckAttention({9, 3, 64, true, false, std::nullopt, std::nullopt});   // Qwen 3 norms, 3 heads per group
  CheckAttention({6, 2, 80, true, true, 6, std::nullopt});               // Gemma: (1+w) norms, window, tails
  CheckAttention({4, 4, 48, false, false, std::nullopt, 30.0});          // soft-capped scores, MHA
}

TEST(DecodeKernels, RefusesWrongShapes) {
  AttentionShape s;
  s.heads = 4;
  s.kv_heads = 2;
  s.head_dim = 8;
  at::Tensor keys = at::zeros({2, 2, 8, 8}), values = at::zeros({2, 2, 8, 8});
  at::Tensor valid = at::ones({2, 8}, at::kBool), table = at::zeros({2, 8});
  EXPECT_THROW(Attention(s, at::zeros({2, 63}), table, table, keys, values, valid, 3), std::invalid_argument);
  EXPECT_THROW(Attention(s, at::zeros({2, 64}), table, table, keys, values, valid, 8), std::invalid_argument);
  at::Tensor half = at::zeros({2, 2, 8, 8}, at::kBFloat16);
  EXPECT_THROW(Attention(s, at::zeros({2, 64}), table, table, half, values, valid, 3), std::invalid_argument);
  EXPECT_THROW(RmsNorm(at::zeros({2, 8}), at::zeros({7}), 1e-6, false), std::invalid_argument);
}

}  // namespace
}  // namespace openrl::model::decode
