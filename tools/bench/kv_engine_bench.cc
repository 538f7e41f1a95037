// tools/bench/kv_engine_bench.cc: ns/op of the KV engine's hot paths (GET, SET,
// INCR, MGET) in one process, on a store laid out as the server does (64 shards).
#include <sys/mman.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>

#include "shared/hash.h"
#include "shared/kv.h"

namespace {

constexpr size_t kRegion = 64ull << 20;
constexpr int kKeys = 100000;

pf::kv::Store* TheStore() {
  static pf::kv::Store* store = [] {
    void* p = mmap(nullptr, kRegion, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) std::abort();
    std::string why;
    pf::kv::Limits l;
    l.eviction = pf::Eviction::kAllKeysLru;
    pf::kv::Store* s = pf::kv::Store::Format(p, kRegion, 64, l, 0xfeedface, &why);
    if (!s) {
      std::fprintf(stderr, "%s\n", why.c_str());
      std::abort();
    }
    std::string v(64, 'v');
    for (int i = 0; i < kKeys; ++i) s->Set("key:" + std::to_string(i), v, {}, 1000);
    return s;
  }();
  return store;
}

std::vector<std::string> Keys(const char* pfx) {
  std::vector<std::string> k;
  for (int i = 0; i < kKeys; ++i) k.push_back(pfx + std::to_string(i));
  return k;
}

void BM_SipHash13_16B(benchmark::State& st) {
  char key[16] = "key:0000012345";
  for (auto _ : st) benchmark::DoNotOptimize(pf::SipHash13(1, 2, key, 16));
}
BENCHMARK(BM_SipHash13_16B);

void BM_GetHit(benchmark::State& st) {
  auto* s = TheStore();
  auto keys = Keys("key:");
  std::string v;
  size_t i = 0;
  for (auto _ : st) {
    benchmark::DoNotOptimize(s->Get(keys[i], 1000, &v));
    if (++i == keys.size()) i = 0;
  }
}
BENCHMARK(BM_GetHit);

void BM_GetMiss(benchmark::State& st) {
  auto* s = TheStore();
  auto keys = Keys("nokey:");
  std::string v;
  size_t i = 0;
  for (auto _ : st) {
    benchmark::DoNotOptimize(s->Get(keys[i], 1000, &v));
    if (++i == keys.size()) i = 0;
  }
}
BENCHMARK(BM_GetMiss);

void BM_SetOverwrite64B(benchmark::State& st) {
  auto* s = TheStore();
  auto keys = Keys("key:");
  std::string v(64, 'w');
  size_t i = 0;
  for (auto _ : st) {
    benchmark::DoNotOptimize(s->Set(keys[i], v, {}, 1000));
    if (++i == keys.size()) i = 0;
  }
}
BENCHMARK(BM_SetOverwrite64B);

void BM_SetDel64B(benchmark::State& st) {
  auto* s = TheStore();
  auto keys = Keys("tmp:");
  std::string v(64, 'w');
  size_t i = 0;
  for (auto _ : st) {
    s->Set(keys[i], v, {}, 1000);
    s->Del(keys[i], 1000);
    if (++i == keys.size()) i = 0;
  }
}
BENCHMARK(BM_SetDel64B);

void BM_IncrBy(benchmark::State& st) {
  auto* s = TheStore();
  int64_t r;
  for (auto _ : st) benchmark::DoNotOptimize(s->IncrBy("counter", 1, 1000, &r));
}
BENCHMARK(BM_IncrBy);

void BM_MGet10(benchmark::State& st) {
  auto* s = TheStore();
  auto keys = Keys("key:");
  std::vector<std::string_view> batch(10);
  std::vector<std::optional<std::string>> out;
  size_t i = 0;
  for (auto _ : st) {
    for (auto& k : batch) {
      k = keys[i];
      if (++i == keys.size()) i = 0;
    }
    s->MGet(batch, 1000, &out);
  }
}
BENCHMARK(BM_MGet10);

}  // namespace

BENCHMARK_MAIN();
