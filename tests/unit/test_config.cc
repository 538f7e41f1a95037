// tests/unit/test_config.cc: conf parsing: valid files, and one test per kind
// of error, each checking the file:line:col: key: message shape.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>

#include "shared/config.h"
#include "shared/util/cidr.h"

using ::testing::HasSubstr;

namespace pf {
namespace {

ConfigResult Parse(const std::string& text) { return ParseConfig(text, "/etc/pf/test.yaml"); }

std::string OneError(const std::string& text) {
  ConfigResult r = Parse(text);
  EXPECT_EQ(r.errors.size(), 1u) << ::testing::PrintToString(r.errors);
  return r.errors.empty() ? "" : r.errors[0];
}

const char* kMinimal = "listeners:\n  - {name: e, port: 7007, protocol: echo}\n";

TEST(Config, MinimalFileGetsDefaults) {
  ConfigResult r = Parse(kMinimal);
  ASSERT_TRUE(r.ok()) << r.errors[0];
  const Config& c = r.config;
  EXPECT_GE(c.workers, 1u);
  ASSERT_EQ(c.listeners.size(), 1u);
  EXPECT_EQ(c.listeners[0].address, "127.0.0.1");
  EXPECT_EQ(c.listeners[0].port, 7007);
  EXPECT_EQ(c.listeners[0].protocol, Protocol::kEcho);
  EXPECT_EQ(c.pidfile, "/etc/pf/preforkd.pid");
  EXPECT_EQ(c.kv.shards, 64u);
  EXPECT_EQ(c.logging.error_log, "stderr");
}

TEST(Config, FullFileParses) {
  ConfigResult r = Parse(R"(
workers: 3
pidfile: ../run/x.pid
shared_memory: 128m
listeners:
  - name: echo
    address: ::1
    port: 7007
    protocol: echo
    backlog: 128
timeouts: {idle: 90s, drain: 500ms, header: 5s, keepalive: 1m}
limits:
  max_connections_per_worker: 100
  max_connections: 150
  max_line_bytes: 8k
  max_request_bytes: 2m
  max_bulk_bytes: 1m
  max_multibulk_len: 1000
  output_high_water: 256k
  keepalive_requests: 50
  max_reply_bytes: 16m
logging: {error_log: log/error.log, level: debug, access_log: "off"}
kv: {shards: 16, max_key_bytes: 1k, max_value_bytes: 2m, eviction: allkeys-lru, sweep_interval: 50ms, password: s3cret}
)");
  ASSERT_TRUE(r.ok()) << r.errors[0];
  const Config& c = r.config;
  EXPECT_EQ(c.workers, 3u);
  EXPECT_EQ(c.pidfile, "/etc/run/x.pid");
  EXPECT_EQ(c.shm_size, 128ull << 20);
  EXPECT_EQ(c.listeners[0].address, "::1");
  EXPECT_EQ(c.listeners[0].backlog, 128);
  EXPECT_EQ(c.timeouts.idle_ms, 90'000u);
  EXPECT_EQ(c.timeouts.drain_ms, 500u);
  EXPECT_EQ(c.timeouts.keepalive_ms, 60'000u);
  EXPECT_EQ(c.limits.max_line_bytes, 8192u);
  EXPECT_EQ(c.limits.output_high_water, 256u * 1024);
  EXPECT_EQ(c.limits.max_reply_bytes, 16ull << 20);
  EXPECT_EQ(c.logging.error_log, "/etc/pf/log/error.log");
  EXPECT_EQ(c.logging.level, "debug");
  EXPECT_EQ(c.logging.access_log, "off");
  EXPECT_EQ(c.kv.shards, 16u);
  EXPECT_EQ(c.kv.eviction, Eviction::kAllKeysLru);
  EXPECT_EQ(c.kv.password, "s3cret");
}

TEST(Config, ShippedProductionExampleHasOnlyMachinePathProblems) {
  // conf/production.yaml names folders of a production host (docroot,
  // htpasswd): on this machine those are the only complaints, besides its
  // placeholder password, which must be replaced before it can run.
  const char* root = getenv("PREFORKD_SOURCE_ROOT");
  ConfigResult r = LoadConfig(std::string(root ? root : ".") + "/conf/production.yaml");
  bool placeholder = false;
  for (const auto& e : r.errors) {
    const bool password = e.find("kv.password: is the example's placeholder") != std::string::npos;
    placeholder = placeholder || password;
    EXPECT_TRUE(password || e.find("listeners[0].root") != std::string::npos ||
                e.find("listeners[0].auth_basic.htpasswd") != std::string::npos)
        << e;
  }
  EXPECT_TRUE(placeholder);
  EXPECT_TRUE(r.config.persistence.enabled);
}

TEST(Config, ShippedDefaultConfigIsValid) {
  const char* root = getenv("PREFORKD_SOURCE_ROOT");
  const std::string path = std::string(root ? root : ".") + "/conf/preforkd.yaml";
  ConfigResult r = LoadConfig(path);
  ASSERT_TRUE(r.ok()) << r.errors[0];
  for (const auto& l : r.config.listeners) EXPECT_EQ(l.address, "127.0.0.1") << l.name;
}

TEST(Config, UnknownKeyNamesKeyAndPosition) {
  EXPECT_EQ(
      OneError(std::string(kMinimal) + "wrokers: 2\n"),
      "/etc/pf/test.yaml:3:1: wrokers: unknown key, expected one of chroot, group, kv, limits, "
      "listeners, local_networks, logging, persistence, pidfile, protected_mode, pubsub, "
      "shared_memory, timeouts, trusted_proxies, upstreams, user, workers");
}

TEST(Config, SecurityDefaults) {
  ConfigResult r = Parse(
      "listeners:\n  - {name: h, port: 8080, protocol: http, root: /tmp}\n"
      "  - {name: w, address: 0.0.0.0, port: 8081, protocol: http, root: /tmp}\n"
      "  - {name: v, address: 192.0.2.1, port: 8082, protocol: http, root: /tmp}\n");
  ASSERT_TRUE(r.ok()) << r.errors[0];
  const Config& c = r.config;
  EXPECT_TRUE(c.protected_mode);
  ASSERT_EQ(c.local_networks.size(), 2u);
  IpAddr a;
  ASSERT_TRUE(IpAddr::Parse("127.9.9.9", &a));
  EXPECT_TRUE(AnyContains(c.local_networks, a));
  ASSERT_TRUE(IpAddr::Parse("::ffff:127.0.0.1", &a));  // v4-mapped: the IPv4 address
  EXPECT_TRUE(AnyContains(c.local_networks, a));
  ASSERT_TRUE(IpAddr::Parse("10.0.0.1", &a));
  EXPECT_FALSE(AnyContains(c.local_networks, a));
  EXPECT_TRUE(c.trusted_proxies.empty());
  EXPECT_EQ(c.limits.max_bad_lines, 8u);
  EXPECT_EQ(c.limits.auth_failures_per_minute, 10u);
  EXPECT_TRUE(c.listeners[0].strict_host);  // loopback
  EXPECT_FALSE(c.listeners[1].strict_host);
  EXPECT_THAT(c.listeners[0].server_names,
              ::testing::ElementsAre("localhost", "127.0.0.1", "[::1]"));
  EXPECT_THAT(c.listeners[1].server_names,
              ::testing::ElementsAre("localhost", "127.0.0.1", "[::1]"));  // not 0.0.0.0
  EXPECT_THAT(c.listeners[2].server_names,
              ::testing::ElementsAre("localhost", "127.0.0.1", "[::1]", "192.0.2.1"));
  EXPECT_FALSE(c.listeners[0].limit_req.enabled());
  EXPECT_EQ(c.listeners[0].limit_conn, 0u);
}

TEST(Config, SecurityKeysParse) {
  ConfigResult r = Parse(
      "protected_mode: false\n"
      "local_networks: [10.0.0.0/8, 192.168.1.7, \"fd00::/8\"]\n"
      "trusted_proxies: [127.0.0.1/32]\n"
      "limits: {max_bad_lines: 3, auth_failures_per_minute: 4}\n"
      "listeners:\n"
      "  - name: h\n    port: 8080\n    protocol: http\n    root: /tmp\n"
      "    server_names: [Example.COM, \"*\"]\n    strict_host: false\n"
      "    limit_req: {rate: 600r/m, burst: 5}\n    limit_conn: 7\n");
  ASSERT_TRUE(r.ok()) << r.errors[0];
  const Config& c = r.config;
  EXPECT_FALSE(c.protected_mode);
  ASSERT_EQ(c.local_networks.size(), 3u);
  IpAddr a;
  ASSERT_TRUE(IpAddr::Parse("10.200.3.4", &a));
  EXPECT_TRUE(c.local_networks[0].Contains(a));
  ASSERT_TRUE(IpAddr::Parse("192.168.1.8", &a));
  EXPECT_FALSE(c.local_networks[1].Contains(a));
  ASSERT_TRUE(IpAddr::Parse("fd12::1", &a));
  EXPECT_TRUE(c.local_networks[2].Contains(a));
  EXPECT_EQ(c.limits.max_bad_lines, 3u);
  EXPECT_EQ(c.limits.auth_failures_per_minute, 4u);
  const ListenerConf& l = c.listeners[0];
  EXPECT_THAT(l.server_names, ::testing::ElementsAre("example.com", "*"));
  EXPECT_FALSE(l.strict_host);
  EXPECT_DOUBLE_EQ(l.limit_req.rate, 10.0);
  EXPECT_EQ(l.limit_req.burst, 5u);
  EXPECT_EQ(l.limit_conn, 7u);
}

TEST(Config, SecurityKeysErrors) {
  EXPECT_THAT(OneError(std::string(kMinimal) + "local_networks: [10.0.0.0/33]\n"),
              HasSubstr("local_networks[0]: '10.0.0.0/33' is not a network"));
  EXPECT_THAT(OneError(std::string(kMinimal) + "trusted_proxies: [proxy.local]\n"),
              HasSubstr("trusted_proxies[0]: 'proxy.local' is not a network"));
  EXPECT_THAT(OneError("listeners:\n  - {name: e, port: 7007, protocol: echo, "
                       "limit_req: {rate: 5r/h}}\n"),
              HasSubstr("limit_req.rate: '5r/h' is not a rate"));
  EXPECT_THAT(OneError("listeners:\n  - {name: e, port: 7007, protocol: echo, "
                       "limit_req: {burst: 5}}\n"),
              HasSubstr("limit_req.rate: missing"));
  EXPECT_THAT(OneError("listeners:\n  - {name: e, port: 7007, protocol: echo, "
                       "limit_req: {rate: 5r/s, nodelay: false}}\n"),
              HasSubstr("limit_req.nodelay: false is not supported"));
  EXPECT_THAT(OneError("listeners:\n  - {name: e, port: 7007, protocol: echo, "
                       "auth_basic: {htpasswd: /etc/passwd}}\n"),
              HasSubstr("only http listeners have basic auth"));
  EXPECT_THAT(OneError(std::string(kMinimal) + "chroot: srv/pf\nuser: nobody\n"),
              HasSubstr("chroot: 'srv/pf' is relative"));
  EXPECT_THAT(OneError(std::string(kMinimal) + "chroot: /srv/pf\n"),
              HasSubstr("chroot: set without user"));
  EXPECT_THAT(OneError("listeners:\n  - {name: h, port: 80, protocol: http, root: /tmp, "
                       "server_names: [\"example.com:80\"]}\n"),
              HasSubstr("'example.com:80' is not a host name"));
  EXPECT_THAT(OneError("listeners:\n  - {name: h, port: 80, protocol: http, root: /tmp, "
                       "auth_basic: {htpasswd: /etc/hostname, paths: [\"/a/../b\"]}}\n"),
              HasSubstr("'/a/../b' is not a plain path"));
  EXPECT_THAT(OneError(std::string(kMinimal) + "kv: {password: CHANGE-ME}\n"),
              HasSubstr("placeholder"));
}

TEST(Config, ChrootPathsAreInside) {
  // Paths are written as seen inside the chroot: relative ones and ones that
  // repeat the chroot folder are errors that say what was meant.
  const std::string base =
      "chroot: /srv/pf\nuser: nobody\nlisteners:\n  - {name: e, port: 7007, protocol: echo}\n";
  EXPECT_THAT(OneError(base + "persistence: {dir: data}\n"),
              HasSubstr("persistence.dir: 'data' is relative, expected an absolute path as seen "
                        "inside chroot /srv/pf"));
  EXPECT_THAT(OneError(base + "logging: {error_log: /srv/pf/log/error.log}\n"),
              HasSubstr("names the chroot folder; paths are as seen inside chroot /srv/pf, "
                        "expected /log/error.log"));
  ConfigResult r = Parse(base + "persistence: {dir: /data}\nlogging: {error_log: /log/e.log}\n");
  ASSERT_TRUE(r.ok()) << r.errors[0];
  EXPECT_EQ(r.config.persistence.dir, "/data");
  EXPECT_EQ(r.config.Outside(r.config.persistence.dir), "/srv/pf/data");
  EXPECT_EQ(r.config.Outside(r.config.logging.error_log), "/srv/pf/log/e.log");
  // ".." cannot climb out of the chroot in the master's view either.
  r = Parse(base + "persistence: {dir: /../../etc/x}\n");
  ASSERT_TRUE(r.ok()) << r.errors[0];
  EXPECT_EQ(r.config.Outside(r.config.persistence.dir), "/srv/pf/etc/x");
}

TEST(Config, UnknownNestedKey) {
  EXPECT_THAT(OneError(std::string(kMinimal) + "limits:\n  max_lines: 3\n"),
              HasSubstr("test.yaml:4:3: limits.max_lines: unknown key"));
}

TEST(Config, PortOutOfRange) {
  EXPECT_EQ(OneError("listeners:\n  - name: e\n    port: 70000\n    protocol: echo\n"),
            "/etc/pf/test.yaml:3:11: listeners[0].port: 70000 is out of range, expected 1..65535");
}

TEST(Config, WrongTypeScalarExpected) {
  EXPECT_THAT(
      OneError(std::string(kMinimal) + "workers: [1, 2]\n"),
      HasSubstr("test.yaml:3:10: workers: a list is the wrong type, expected auto or an integer"));
}

TEST(Config, NotAnInteger) {
  EXPECT_THAT(OneError(std::string(kMinimal) + "workers: many\n"),
              HasSubstr("workers: 'many' is not an integer, expected an integer in 1..256"));
}

TEST(Config, BadSizeAndDuration) {
  ConfigResult r =
      Parse(std::string(kMinimal) + "limits: {max_line_bytes: 12q}\ntimeouts: {idle: 5 minutes}\n");
  ASSERT_EQ(r.errors.size(), 2u);
  EXPECT_THAT(r.errors[0], HasSubstr("limits.max_line_bytes: '12q' is not a size"));
  EXPECT_THAT(r.errors[1], HasSubstr("timeouts.idle: '5 minutes' is not a duration"));
}

TEST(Config, SizeOutOfRange) {
  EXPECT_THAT(OneError(std::string(kMinimal) + "shared_memory: 4k\n"),
              HasSubstr("shared_memory: 4k is out of range, expected 1m..64g"));
}

TEST(Config, MaxReplyBytesDefaultAndRange) {
  ConfigResult r = Parse(kMinimal);
  ASSERT_TRUE(r.ok()) << r.errors[0];
  EXPECT_EQ(r.config.limits.max_reply_bytes, 64ull << 20);
  EXPECT_EQ(Parse(std::string(kMinimal) + "limits: {max_reply_bytes: 4g}\n")
                .config.limits.max_reply_bytes,
            4ull << 30);
  EXPECT_THAT(OneError(std::string(kMinimal) + "limits: {max_reply_bytes: 512k}\n"),
              HasSubstr("limits.max_reply_bytes: 512k is out of range, expected 1m..4g"));
  EXPECT_THAT(OneError(std::string(kMinimal) + "limits: {max_reply_bytes: 5g}\n"),
              HasSubstr("limits.max_reply_bytes: 5g is out of range, expected 1m..4g"));
}

TEST(Config, DefaultsLetTheLargestValueBeOverwritten) {
  ConfigResult r = Parse(kMinimal);
  ASSERT_TRUE(r.ok()) << r.errors[0];
  EXPECT_EQ(r.config.shm_size, 256ull << 20);
  EXPECT_EQ(r.config.kv.max_value_bytes, 16u << 20);
  EXPECT_EQ(r.config.kv.large_memory, 64ull << 20);
  // A value of the limit arrives over RESP in one bulk string and one command.
  EXPECT_GE(r.config.limits.max_bulk_bytes, r.config.kv.max_value_bytes);
  EXPECT_GT(r.config.limits.max_request_bytes, r.config.kv.max_value_bytes);
}

TEST(Config, ShardsTooSmallForMaxValueAreAnError) {
  // Without a large-object area every value lives in its shard: 64m over 64
  // shards is ~1 MB a shard, which cannot hold an old and a new copy of a
  // 1 MB value.
  const std::string no_area = std::string(kMinimal) + "shared_memory: 64m\n";
  std::string e = OneError(no_area + "kv: {large_memory: 0, max_value_bytes: 1m}\n");
  EXPECT_THAT(e, HasSubstr("kv.max_value_bytes: 1048576 bytes needs "));
  EXPECT_THAT(e, HasSubstr("shared_memory 67108864 / kv.shards 64 gives "));
  EXPECT_THAT(e, HasSubstr("; expected shared_memory >= "));
  EXPECT_THAT(e, HasSubstr("m, fewer kv.shards, or a smaller kv.max_value_bytes"));
  // The size it suggests is enough.
  size_t at = e.find("expected shared_memory >= ") + 26;
  std::string suggested = e.substr(at, e.find(',', at) - at);
  EXPECT_TRUE(Parse(std::string(kMinimal) + "shared_memory: " + suggested +
                    "\nkv: {large_memory: 0, max_value_bytes: 1m}\n")
                  .ok())
      << suggested;
  // ... as are fewer shards, or smaller values.
  EXPECT_TRUE(Parse(no_area + "kv: {large_memory: 0, max_value_bytes: 1m, shards: 16}\n").ok());
  EXPECT_TRUE(Parse(no_area + "kv: {large_memory: 0, max_value_bytes: 128k}\n").ok());
  // With the area, the same 1 MB values need no room in the shards.
  EXPECT_TRUE(Parse(no_area + "kv: {large_memory: 8m, max_value_bytes: 1m}\n").ok());
}

TEST(Config, LargeMemoryMustHoldTwoOfTheLargestValues) {
  std::string e = OneError(std::string(kMinimal) + "kv: {max_value_bytes: 40m}\n");
  EXPECT_THAT(e, HasSubstr("kv.large_memory: 67108864 bytes cannot hold 2 values of "
                           "kv.max_value_bytes 41943040 (so the largest can be overwritten); "
                           "expected kv.large_memory >= 81m or a smaller kv.max_value_bytes"));
  EXPECT_TRUE(
      Parse(std::string(kMinimal) + "kv: {max_value_bytes: 40m, large_memory: 81m}\n").ok());
  // The area is part of shared_memory.
  EXPECT_THAT(OneError(std::string(kMinimal) + "kv: {large_memory: 300m}\n"),
              HasSubstr("kv.large_memory: shared_memory 268435456 cannot hold the pub/sub bus, 64 "
                        "kv.shards and a large-object area of 314572800 bytes"));
  EXPECT_THAT(OneError(std::string(kMinimal) + "kv: {large_memory: 4k, max_value_bytes: 1k}\n"),
              HasSubstr("kv.large_memory: 4096 is too small to hold a value, expected 0 (none) "
                        "or at least 64k"));
  EXPECT_THAT(OneError(std::string(kMinimal) + "kv: {large_memory: 2048g}\n"),
              HasSubstr("kv.large_memory: 2048g is out of range"));
}

TEST(Config, UnknownProtocol) {
  EXPECT_THAT(OneError("listeners:\n  - {name: x, port: 1, protocol: gopher}\n"),
              HasSubstr("listeners[0].protocol: 'gopher' is not a protocol this build serves"));
}

TEST(Config, BadAddress) {
  EXPECT_THAT(OneError("listeners:\n  - {name: x, port: 1, protocol: echo, address: localhostt}\n"),
              HasSubstr("listeners[0].address: 'localhostt' is not an IP address"));
}

TEST(Config, MissingListenerFields) {
  ConfigResult r = Parse("listeners:\n  - {name: x}\n");
  ASSERT_EQ(r.errors.size(), 2u);
  EXPECT_THAT(r.errors[0], HasSubstr("listeners[0].port: missing"));
  EXPECT_THAT(r.errors[1], HasSubstr("listeners[0].protocol: missing"));
}

TEST(Config, MissingListeners) {
  EXPECT_THAT(OneError("workers: 1\n"), HasSubstr("listeners: missing"));
  EXPECT_THAT(OneError("listeners: []\n"), HasSubstr("listeners: empty"));
}

TEST(Config, DuplicateListenerNameAndSocket) {
  ConfigResult r = Parse(
      "listeners:\n  - {name: a, port: 7, protocol: echo}\n  - {name: a, port: 7, protocol: "
      "echo}\n");
  ASSERT_EQ(r.errors.size(), 2u);
  EXPECT_THAT(r.errors[0], HasSubstr("listeners[1].name: 'a' is used by listeners[0]"));
  EXPECT_THAT(r.errors[1], HasSubstr("listeners[1].port: 127.0.0.1:7 is used by listeners[0]"));
}

TEST(Config, DuplicateKey) {
  EXPECT_THAT(OneError(std::string(kMinimal) + "workers: 1\nworkers: 2\n"),
              HasSubstr("workers: duplicate key"));
}

TEST(Config, BadEnumValues) {
  ConfigResult r =
      Parse(std::string(kMinimal) + "logging: {level: loud}\nkv: {eviction: random, shards: 3}\n");
  ASSERT_EQ(r.errors.size(), 3u);
  EXPECT_THAT(r.errors[0], HasSubstr("logging.level: 'loud' is not a level"));
  EXPECT_THAT(r.errors[1], HasSubstr("kv.eviction: 'random' is not a policy"));
  EXPECT_THAT(r.errors[2], HasSubstr("kv.shards: 3 is not a power of two"));
}

TEST(Config, HttpOpsAllow) {
  const std::string base = "listeners:\n  - {name: h, port: 8080, protocol: http, root: /tmp";
  ConfigResult r = Parse(base + "}\n");
  ASSERT_TRUE(r.ok()) << r.errors[0];
  EXPECT_FALSE(r.config.listeners[0].ops_allow_all);  // loopback only by default
  r = Parse(base + ", ops_allow: all}\n");
  ASSERT_TRUE(r.ok()) << r.errors[0];
  EXPECT_TRUE(r.config.listeners[0].ops_allow_all);
  r = Parse(base + ", ops_allow: loopback}\n");
  ASSERT_TRUE(r.ok()) << r.errors[0];
  EXPECT_FALSE(r.config.listeners[0].ops_allow_all);
  EXPECT_THAT(OneError(base + ", ops_allow: everyone}\n"),
              HasSubstr("test.yaml:2:66: listeners[0].ops_allow: 'everyone' is not a choice, "
                        "expected loopback or all"));
}

TEST(Config, YamlSyntaxError) {
  EXPECT_THAT(OneError("listeners: [\n"), HasSubstr("test.yaml:2:1: (yaml): "));
}

TEST(Config, TopLevelMustBeMapping) {
  EXPECT_THAT(OneError("- a\n- b\n"),
              HasSubstr("(top level): a list is the wrong type, expected a mapping"));
}

TEST(Config, EveryProblemIsListed) {
  ConfigResult r =
      Parse("workers: 0\nlisteners:\n  - {name: e, port: 0, protocol: echo}\nbogus: 1\n");
  EXPECT_EQ(r.errors.size(), 3u) << ::testing::PrintToString(r.errors);
}

TEST(Config, MissingFile) {
  ConfigResult r = LoadConfig("/nonexistent/preforkd.yaml");
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_THAT(r.errors[0], HasSubstr("/nonexistent/preforkd.yaml:1:1: (file): cannot open"));
}

TEST(Config, PubSubDefaults) {
  ConfigResult r = Parse(kMinimal);
  ASSERT_TRUE(r.ok()) << r.errors[0];
  const PubSubConf& p = r.config.pubsub;
  EXPECT_EQ(p.ring_slots, 1024u);
  EXPECT_EQ(p.max_message_bytes, 4096u);
  EXPECT_EQ(p.output_hard_limit, 32ull << 20);
  EXPECT_EQ(p.output_soft_limit, 8ull << 20);
  EXPECT_EQ(p.output_soft_seconds, 60u);
  EXPECT_EQ(p.reserved_prefix, "$sys.");
  EXPECT_EQ(p.admin_token, "");
}

TEST(Config, PubSubSectionParses) {
  ConfigResult r = Parse(std::string(kMinimal) + R"(pubsub:
  ring_slots: 64
  max_message_bytes: 8k
  max_channel_bytes: 100
  channel_table_size: 512
  max_channels_per_client: 10
  publish_rate_per_client: 50
  output_hard_limit: 1m
  output_soft_limit: 256k
  output_soft_seconds: 5
  reserved_prefix: "#admin."
  admin_token: s3cret-admin
  chat_history: 5
)");
  ASSERT_TRUE(r.ok()) << r.errors[0];
  const PubSubConf& p = r.config.pubsub;
  EXPECT_EQ(p.ring_slots, 64u);
  EXPECT_EQ(p.max_message_bytes, 8192u);
  EXPECT_EQ(p.max_channel_bytes, 100u);
  EXPECT_EQ(p.channel_table_size, 512u);
  EXPECT_EQ(p.max_channels_per_client, 10u);
  EXPECT_EQ(p.publish_rate_per_client, 50u);
  EXPECT_EQ(p.output_hard_limit, 1ull << 20);
  EXPECT_EQ(p.output_soft_limit, 256ull << 10);
  EXPECT_EQ(p.output_soft_seconds, 5u);
  EXPECT_EQ(p.reserved_prefix, "#admin.");
  EXPECT_EQ(p.admin_token, "s3cret-admin");
  EXPECT_EQ(p.chat_history, 5u);
}

TEST(Config, PubSubRangesAreChecked) {
  const std::string base = std::string(kMinimal) + "pubsub:\n";
  EXPECT_THAT(
      OneError(base + "  ring_slots: 4\n"),
      HasSubstr("test.yaml:4:15: pubsub.ring_slots: 4 is out of range, expected 16..1048576"));
  EXPECT_THAT(OneError(base + "  max_message_bytes: 32m\n"),
              HasSubstr("pubsub.max_message_bytes: 32m is out of range, expected 64..16m"));
  EXPECT_THAT(OneError(base + "  output_hard_limit: lots\n"),
              HasSubstr("pubsub.output_hard_limit: 'lots' is not a size"));
  EXPECT_THAT(
      OneError(base + "  publish_rate_per_client: 0\n"),
      HasSubstr("pubsub.publish_rate_per_client: 0 is out of range, expected 1..100000000"));
  EXPECT_THAT(
      OneError(base + "  ring_size: 10\n"),
      HasSubstr("pubsub.ring_size: unknown key, expected one of admin_token, channel_table_size"));
}

TEST(Config, PubSubSoftLimitAboveHardLimitIsAnError) {
  EXPECT_THAT(
      OneError(std::string(kMinimal) + "pubsub: {output_hard_limit: 1m, output_soft_limit: 2m}\n"),
      HasSubstr("pubsub.output_soft_limit: 2097152 is above output_hard_limit (1048576), "
                "expected at most the hard limit"));
}

TEST(Config, PubSubAdminTokenMustNotBeTrivial) {
  EXPECT_THAT(OneError(std::string(kMinimal) + "pubsub: {admin_token: abc}\n"),
              HasSubstr("pubsub.admin_token: too short (3 bytes), expected at least 8 bytes"));
}

TEST(Config, GroupNeedsUser) {
  EXPECT_THAT(OneError(std::string(kMinimal) + "group: nogroup\n"),
              HasSubstr("group: set without user"));
}

// ---- the reverse proxy (upstreams, routes) ---------------------------------

const char* kProxied =
    "upstreams:\n"
    "  - name: app\n"
    "    balance: least_conn\n"
    "    read_timeout: 2s\n"
    "    servers:\n"
    "      - {address: \"127.0.0.1:8081\", weight: 3, max_fails: 2, fail_timeout: 5s}\n"
    "      - {address: \"[::1]:8082\", backup: true}\n"
    "listeners:\n"
    "  - name: h\n"
    "    port: 8080\n"
    "    protocol: http\n"
    "    root: /tmp\n"
    "    routes:\n"
    "      - {prefix: /api/, proxy: app, strip_prefix: true, set_headers: {X-App: web}}\n"
    "      - {exact: /login, proxy: app, host: app.internal}\n";

TEST(Config, UpstreamsAndRoutes) {
  ConfigResult r = Parse(kProxied);
  ASSERT_TRUE(r.ok()) << r.errors[0];
  ASSERT_EQ(r.config.upstreams.size(), 1u);
  const UpstreamConf& u = r.config.upstreams[0];
  EXPECT_EQ(u.balance, Balance::kLeastConn);
  EXPECT_EQ(u.read_timeout_ms, 2000u);
  ASSERT_EQ(u.servers.size(), 2u);
  EXPECT_EQ(u.servers[0].weight, 3u);
  EXPECT_EQ(u.servers[0].max_fails, 2u);
  EXPECT_EQ(u.servers[0].fail_timeout_ms, 5000u);
  EXPECT_EQ(u.servers[0].sa.ss_family, AF_INET);
  EXPECT_EQ(u.servers[1].sa.ss_family, AF_INET6);
  EXPECT_TRUE(u.servers[1].backup);
  const auto& routes = r.config.listeners[0].routes;
  ASSERT_EQ(routes.size(), 2u);
  EXPECT_EQ(routes[0].path, "/api/");
  EXPECT_FALSE(routes[0].exact);
  EXPECT_TRUE(routes[0].strip_prefix);
  ASSERT_EQ(routes[0].set_headers.size(), 1u);
  EXPECT_EQ(routes[0].set_headers[0].first, "x-app");
  EXPECT_TRUE(routes[1].exact);
  EXPECT_EQ(routes[1].host, "app.internal");
  EXPECT_EQ(routes[1].upstream, 0u);
}

TEST(Config, ProxyMistakesAreNamed) {
  auto with = [](const std::string& from, const std::string& to) {
    std::string t = kProxied;
    t.replace(t.find(from), from.size(), to);
    return t;
  };
  EXPECT_THAT(OneError(with("proxy: app, host", "proxy: nope, host")),
              HasSubstr("routes[1].proxy: 'nope' is not an upstream"));
  EXPECT_THAT(OneError(with("127.0.0.1:8081", "127.0.0.1")), HasSubstr("expected host:port"));
  EXPECT_THAT(OneError(with("127.0.0.1:8081", "127.0.0.1:0")), HasSubstr("not a port"));
  EXPECT_THAT(OneError(with("least_conn", "fastest")), HasSubstr("expected round_robin"));
  EXPECT_THAT(OneError(with("{exact: /login", "{exact: /_health")),
              HasSubstr("served by preforkd itself"));
  EXPECT_THAT(OneError(with("{exact: /login", "{exact: login")),
              HasSubstr("does not start with /"));
  EXPECT_THAT(OneError(with("X-App: web", "X-App: \"a\\r\\nX-Evil: 1\"")),
              HasSubstr("not a header name and value"));
  EXPECT_THAT(OneError(with("X-App: web", "Host: evil")), HasSubstr("the proxy sets Host itself"));
  EXPECT_THAT(
      OneError(with("{address: \"127.0.0.1:8081\", weight: 3, max_fails: 2, fail_timeout: 5s}",
                    "{address: \"127.0.0.1:8081\", backup: true}")),
      HasSubstr("every server is a backup"));
  EXPECT_THAT(OneError(with("protocol: http\n    root: /tmp", "protocol: echo")),
              HasSubstr("only http listeners proxy"));
}

}  // namespace
}  // namespace pf
