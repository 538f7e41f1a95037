// tools/bench/kv_engine_bench.cc: ns/op of the KV engine's hot paths (GET, SET,
// INCR, MGET) in one process, on a store laid out as the server does (64 shards).
#include <benchmark/benchmark.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "shared/kv/kv.h"
#include "shared/util/hash.h"

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

// What per-shard locks buy: N processes (forked, like workers) each doing
// SETs and GETs for a fixed count, either all on keys of one shard (they
// contend for one robust mutex) or on keys spread over every shard. Reports
// total operations per second of wall time.
void BM_Processes(benchmark::State& st) {
  const int procs = static_cast<int>(st.range(0));
  const bool one_shard = st.range(1) == 1;
  constexpr int kOps = 200000;
  auto* s = TheStore();
  // Keys of shard 0 only, or all keys.
  std::vector<std::string> keys;
  for (int i = 0; keys.size() < 4096; ++i) {
    std::string k = "mp:" + std::to_string(i);
    if (!one_shard || s->ShardOf(k) == 0) keys.push_back(std::move(k));
  }
  const std::string v(64, 'v');
  for (auto _ : st) {
    timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    std::vector<pid_t> kids;
    for (int p = 0; p < procs; ++p) {
      pid_t pid = fork();
      if (pid == 0) {
        std::string out;
        for (int i = 0; i < kOps; ++i) {
          const std::string& k = keys[static_cast<size_t>(i * 7 + p * 131) % keys.size()];
          if (i % 4 == 0)
            s->Set(k, v, {}, 1000);
          else
            s->Get(k, 1000, &out);
        }
        _exit(0);
      }
      kids.push_back(pid);
    }
    for (pid_t k : kids) waitpid(k, nullptr, 0);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    st.SetIterationTime(static_cast<double>(t1.tv_sec - t0.tv_sec) +
                        static_cast<double>(t1.tv_nsec - t0.tv_nsec) / 1e9);
  }
  st.SetItemsProcessed(st.iterations() * procs * kOps);
  st.SetLabel(one_shard ? "one shard" : "spread over shards");
}
BENCHMARK(BM_Processes)
    ->ArgsProduct({{1, 2, 4}, {1, 0}})
    ->ArgNames({"procs", "one_shard"})
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond)
    ->Iterations(3);

BENCHMARK_MAIN();
