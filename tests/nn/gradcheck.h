// Finite-difference checks of gradients, shared by the engine's tests.
#pragma once

#include <catch2/catch.hpp>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "common/base/rng.h"
#include "common/nn/ops/op.h"

namespace pstrain {

inline std::vector<float> RandomVector(Rng& rng, size_t n, float scale = 1.0f) {
  std::vector<float> v(n);
  for (float& x : v) x = rng.Uniform(-scale, scale);
  return v;
}

// Central difference in double of f at x[i].
template <typename F>
double NumericGrad(F&& f, float* x, double eps = 1e-3) {
  const float saved = *x;
  *x = static_cast<float>(saved + eps);
  const double up = f();
  *x = static_cast<float>(saved - eps);
  const double down = f();
  *x = saved;
  return (up - down) / (2 * eps);
}

inline void CheckClose(double analytic, double numeric, const std::string& what) {
  INFO(what << ": analytic " << analytic << " numeric " << numeric);
  CHECK(std::abs(analytic - numeric) <= 2e-3 + 2e-2 * std::abs(numeric));
}

// Runs `op` on random inputs of `inputs` shapes and random parameters and
// checks every input and parameter gradient of L = sum(y * r), for a random
// r, against central differences, both as the first writer of every
// gradient and adding to gradients that already hold values.
inline void CheckOpGradients(Op& op, const std::vector<ValueShape>& inputs, int batch,
                             uint64_t seed, bool training = false) {
  INFO(op.Describe());
  Rng rng(seed);
  const size_t scratch_bytes = op.ScratchBytes(batch);
  std::vector<float> scratch(scratch_bytes / sizeof(float) + 16);
  std::vector<std::vector<float>> params, x;
  std::vector<float*> w_init;
  for (const ParamDecl& p : op.Params()) {
    size_t n = 1;
    for (int64_t d : p.shape) n *= static_cast<size_t>(d);
    params.emplace_back(n);
    w_init.push_back(params.back().data());
  }
  op.InitParams(rng, w_init);
  // Biases start at zero; random ones exercise their gradient too.
  for (auto& p : params) {
    for (float& v : p) v += rng.Uniform(-0.1f, 0.1f);
  }
  for (const ValueShape& s : inputs) x.push_back(RandomVector(rng, batch * s.size));
  const size_t out_n = static_cast<size_t>(batch) * op.output().size;
  const std::vector<float> r = RandomVector(rng, out_n);
  OpCall c;
  c.batch = batch;
  c.training = training;
  c.step_seed = seed;
  c.stream = 7;
  c.scratch = reinterpret_cast<std::byte*>(scratch.data());
  for (auto& xi : x) c.in.push_back(xi.data());
  for (auto& p : params) c.w.push_back(p.data());
  auto loss = [&] {
    std::vector<float> y(out_n);
    OpCall f = c;
    f.out = y.data();
    op.Forward(f);
    double sum = 0;
    for (size_t i = 0; i < y.size(); ++i) sum += static_cast<double>(y[i]) * r[i];
    return sum;
  };
  // Backward as the first writer of every gradient (buffers full of NaN,
  // which a write replaces), then adding to gradients that hold 0.5: what
  // it added must be what it wrote.
  const float nan = std::numeric_limits<float>::quiet_NaN();
  auto backward = [&](bool add, float start, std::vector<std::vector<float>>* dx,
                      std::vector<std::vector<float>>* dw) {
    dx->clear();
    dw->clear();
    for (auto& xi : x) dx->emplace_back(xi.size(), start);
    for (auto& p : params) dw->emplace_back(p.size(), start);
    std::vector<float> y(out_n), dy(r);
    OpCall b = c;
    b.out = y.data();
    b.dout = dy.data();
    for (auto& d : *dx) b.din.push_back(d.data());
    for (auto& d : *dw) b.dw.push_back(d.data());
    b.din_add.assign(x.size(), add ? 1 : 0);
    b.dw_add.assign(params.size(), add ? 1 : 0);
    op.Forward(b);
    op.Backward(b);
  };
  std::vector<std::vector<float>> dx, dw, dx_added, dw_added;
  backward(false, nan, &dx, &dw);
  backward(true, 0.5f, &dx_added, &dw_added);
  for (size_t k = 0; k < dx.size(); ++k) {
    for (size_t i = 0; i < dx[k].size(); ++i) {
      INFO("input " << k << " [" << i << "]");
      CHECK(dx_added[k][i] - 0.5f == Approx(dx[k][i]).margin(1e-6));
    }
  }
  for (size_t k = 0; k < dw.size(); ++k) {
    for (size_t i = 0; i < dw[k].size(); ++i) {
      INFO("parameter " << k << " [" << i << "]");
      CHECK(dw_added[k][i] - 0.5f == Approx(dw[k][i]).margin(1e-6));
    }
  }
  for (size_t k = 0; k < x.size(); ++k) {
    for (size_t i = 0; i < x[k].size(); ++i) {
      CheckClose(dx[k][i], NumericGrad(loss, &x[k][i]),
                 "input " + std::to_string(k) + " [" + std::to_string(i) + "]");
    }
  }
  const std::vector<ParamDecl> decls = op.Params();
  for (size_t k = 0; k < params.size(); ++k) {
    for (size_t i = 0; i < params[k].size(); ++i) {
      CheckClose(dw[k][i], NumericGrad(loss, &params[k][i]),
                 decls[k].suffix + "[" + std::to_string(i) + "]");
    }
  }
}

}  // namespace pstrain
