// shared/config.h: the typed configuration (conf/preforkd.yaml) and its loader.
// Every limit a client can push against is declared here once, with its range,
// and handlers read it from this struct; never a literal in a handler.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "shared/bus.h"
#include "shared/kv/kv.h"
#include "shared/util/cidr.h"

namespace pf {

enum class Protocol : uint8_t { kEcho, kResp, kKvJson, kHttp, kChat };
const char* ProtocolName(Protocol p);

// http: HTTP basic auth (nginx auth_basic) over some path prefixes.
struct BasicAuthConf {
  std::string realm = "preforkd";
  std::string htpasswd;  // absolute; "" = off
  // The file's text, read when the config is loaded (by the master, so a
  // reload re-reads it and workers need no access to it).
  std::string htpasswd_text;
  std::vector<std::string> paths;  // path prefixes ("/" = everything)
  bool enabled() const { return !htpasswd.empty(); }
};

// Requests per client address over all workers (nginx limit_req with
// nodelay): `rate` a second on average, `burst` more at once; past that
// the request is refused (HTTP 429, RESP -ERR, kv-json RATE_LIMITED).
struct LimitReqConf {
  double rate = 0;  // requests per second; 0 = off
  uint32_t burst = 0;
  bool enabled() const { return rate > 0; }
};

namespace tls {
class ServerContext;  // shared/tls/context.h
}

// A certificate chain (PEM, leaf first) and its private key. The files are
// read by the master when the config is loaded, before it drops privileges,
// so workers never need access to them.
struct TlsCertConf {
  std::string cert, key;          // absolute paths (as the master sees them)
  std::string cert_pem, key_pem;  // their text
};

// A listener's TLS (docs/tls.md). Safe defaults: TLS 1.2 and 1.3 only,
// Mozilla's "intermediate" TLS 1.2 ciphers, X25519 and P-256.
struct TlsConf {
  bool enabled = false;
  // [0]: `cert`/`key`, the default; then `certificates:`, each picked by SNI
  // when the client's server name matches a name in that certificate.
  std::vector<TlsCertConf> certs;
  std::string ca, ca_pem;  // CAs that sign client certificates
  enum class ClientAuth : uint8_t { kNone, kOptional, kRequired };
  ClientAuth client_auth = ClientAuth::kNone;
  int min_version = 0x0303, max_version = 0x0304;  // TLS1_2_VERSION .. TLS1_3_VERSION
  std::string ciphers =
      "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
      "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
      "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
      "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305";
  std::string ciphersuites =
      "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:"
      "TLS_CHACHA20_POLY1305_SHA256";
  std::string groups = "X25519:P-256:P-384";
  // Client certificates (verified against `ca`) whose subject CN is listed
  // here count as authenticated on resp and kv-json without AUTH ("*": any
  // verified certificate). Empty: certificates only admit the client.
  std::vector<std::string> auth_by_certificate;
  bool prefer_server_ciphers = false;
  bool session_tickets = true;
  uint32_t ticket_rotate_ms = 3'600'000;  // all TLS listeners share one key ring (docs/tls.md)
  uint32_t handshake_timeout_ms = 10'000;
  std::string ocsp_stapling, ocsp_der;  // a DER OCSP response file, stapled as is
  // Built from the above by CheckTls (the master, at load and reload).
  std::shared_ptr<const tls::ServerContext> ctx;
};

// http: gzip and brotli (docs/http.md, "Compression"). Dynamic responses
// and static files of the listed types above min_length are compressed on
// the fly (static results cached per worker, cache_bytes); file.gz / file.br
// beside a static file are served as they are when static_precompressed.
struct CompressionConf {
  bool gzip = true;
  bool brotli = true;
  uint32_t gzip_level = 6;    // libdeflate 1..12 (6 = zlib's and nginx's usual)
  uint32_t brotli_level = 5;  // 0..11
  uint64_t min_length = 256;  // smaller bodies go as they are
  // Larger bodies are not compressed on the fly (a worker compresses while
  // every other connection waits); precompressed files have no limit.
  uint64_t max_length = 8ull << 20;
  std::vector<std::string> types = {"text/html",
                                    "text/css",
                                    "text/plain",
                                    "text/xml",
                                    "text/javascript",
                                    "text/markdown",
                                    "text/csv",
                                    "application/javascript",
                                    "application/json",
                                    "application/xml",
                                    "application/rss+xml",
                                    "application/atom+xml",
                                    "application/wasm",
                                    "application/manifest+json",
                                    "image/svg+xml"};
  bool static_precompressed = true;
  uint64_t cache_bytes = 16ull << 20;  // per worker and listener; 0 = compress every time
  bool enabled() const { return gzip || brotli; }
};

// The reverse proxy (docs/http.md, "Reverse proxy"): named groups of
// upstream servers, and per http listener the routes that send requests to
// them.
struct UpstreamServerConf {
  std::string address;    // "host:port" as written
  sockaddr_storage sa{};  // resolved when the config is read
  socklen_t sa_len = 0;
  uint32_t weight = 1;                // share of the requests (round_robin, least_conn, hash)
  uint32_t max_fails = 1;             // failures within fail_timeout that mark it down (0 = never)
  uint32_t fail_timeout_ms = 10'000;  // ... and for how long it then stays down
  bool backup = false;                // used only while every other server is down
};

enum class Balance { kRoundRobin, kLeastConn, kRandomTwo, kHash };
const char* BalanceName(Balance b);

struct UpstreamConf {
  std::string name;
  std::vector<UpstreamServerConf> servers;
  Balance balance = Balance::kRoundRobin;
  std::string hash_key = "uri";  // balance hash: "uri" (path and query) or "client" (address)
  uint32_t keepalive = 32;       // idle connections a worker keeps open to the group (0 = none)
  uint32_t keepalive_timeout_ms = 30'000;  // ... closed after this long unused
  uint32_t connect_timeout_ms = 5'000;
  uint32_t send_timeout_ms = 60'000;  // between two writes of the request
  uint32_t read_timeout_ms = 60'000;  // between two reads of the response
  uint32_t tries = 0;                 // servers tried for an idempotent request (0 = each once)
};

struct RouteConf {
  std::string path;  // the prefix (or the whole path when exact)
  bool exact = false;
  std::string proxy;          // the upstream's name
  size_t upstream = 0;        // its index in Config::upstreams (resolved after reading)
  bool strip_prefix = false;  // "/api/x" under prefix "/api/" goes upstream as "/x"
  std::string host;           // "" = pass the client's Host; else send this one
  std::vector<std::pair<std::string, std::string>> set_headers;  // request headers to set
};

struct ListenerConf {
  std::string name;
  std::string address = "127.0.0.1";
  uint16_t port = 0;
  Protocol protocol = Protocol::kEcho;
  int backlog = 511;
  // http only
  std::string root;  // docroot (absolute after load)
  std::string index = "index.html";
  bool autoindex = false;
  // ops_allow: loopback (default) | all: who may use /_health, /_stats, /_metrics, /_admin/
  bool ops_allow_all = false;
  // http: the names a request's Host may carry (lower case, port ignored;
  // "*" = any). /kv and /_* answer 421 to other names (DNS rebinding); so do
  // static files while strict_host is on (default: on for a loopback address).
  std::vector<std::string> server_names;
  bool strict_host = true;
  BasicAuthConf auth_basic;
  CompressionConf compression;
  std::vector<RouteConf> routes;  // proxied paths, first match wins (after /kv and /_*)
  // Every protocol: request rate and open connections per client address.
  LimitReqConf limit_req;
  uint32_t limit_conn = 0;  // 0 = no limit
  TlsConf tls;

  // The identity of the kernel socket: a reload keeps a listener's sockets
  // when this does not change.
  std::string SocketKey() const { return address + ":" + std::to_string(port); }
};

struct TimeoutsConf {
  uint32_t idle_ms = 300'000;      // close a connection with no traffic for this long (0 = never)
  uint32_t drain_ms = 10'000;      // graceful stop / reload: how long old workers keep connections
  uint32_t header_ms = 10'000;     // http: time to receive a whole request head (408 after)
  uint32_t keepalive_ms = 75'000;  // http: idle time between keep-alive requests
  // Closing while the peer still sends: read and drop its input for at most
  // lingering_ms in all, and lingering_timeout_ms without data (0 = close at once).
  uint32_t lingering_ms = 30'000;
  uint32_t lingering_timeout_ms = 5'000;
  // A worker whose loop has not run for this long (stuck, or stopped) is
  // killed and respawned by the master (0 = no watchdog).
  uint32_t worker_stall_ms = 10'000;
  // A chat client that sends nothing for this long is disconnected (0 = never).
  uint32_t chat_idle_ms = 3'600'000;
};

struct LimitsConf {
  uint32_t max_connections_per_worker = 10'000;
  uint32_t max_connections = 100'000;   // over all workers
  uint32_t max_line_bytes = 64 * 1024;  // line protocols (echo lines, kv-json, chat, resp inline)
  uint32_t max_request_bytes = 32 * 1024 * 1024;  // resp multibulk total, http body
  uint32_t max_bulk_bytes = 16 * 1024 * 1024;     // resp: one bulk string ($len)
  uint32_t max_multibulk_len = 1024 * 1024;       // resp: elements in one command (*len)
  uint32_t output_high_water = 1024 * 1024;  // stop reading a client whose output is above this
  uint32_t keepalive_requests = 1000;        // http: requests per connection
  // Data one multi-key command may move: MGET/KEYS reply bytes, SCAN keys per
  // call, MSET key+value bytes. Past it MGET/KEYS/MSET answer an error and
  // SCAN returns early with its cursor.
  uint64_t max_reply_bytes = 64ull << 20;
  // Normal (not subscribed) clients' unsent output: past hard they are
  // disconnected at once, past soft for soft_seconds too (Redis'
  // client-output-buffer-limit normal). 0 = no limit.
  uint64_t client_output_hard = 128ull << 20;
  uint64_t client_output_soft = 32ull << 20;
  uint32_t client_output_soft_seconds = 60;
  // All client buffers of one worker together (input and output; the static
  // files queued in HTTP output are open files, not memory, and do not
  // count): past it the biggest consumers are disconnected first (Redis'
  // maxmemory-clients). 0 = no limit.
  uint64_t clients_memory = 256ull << 20;
  // kv-json: lines that are not a request a connection may send before it
  // is closed (the first line must be a JSON object in any case).
  uint32_t max_bad_lines = 8;
  // Failed AUTH / password / basic-auth attempts one client address may
  // make a minute, over all workers; past it every attempt is refused
  // without a check until the minute ends.
  uint32_t auth_failures_per_minute = 10;
};

struct LoggingConf {
  std::string error_log = "stderr";  // path, or "stderr"
  std::string level = "info";        // trace debug info warn error critical off
  std::string access_log = "off";    // path, or "off"
};

struct KvConf {
  uint32_t shards = 64;
  uint32_t max_key_bytes = 512;
  uint32_t max_value_bytes = 16 * 1024 * 1024;
  // The part of shared_memory that holds values of 16 KiB and more (the
  // large-object area); 0 = none (every value lives in its shard).
  uint64_t large_memory = 64ull << 20;
  Eviction eviction = Eviction::kNoEviction;
  uint32_t sweep_interval_ms = 100;  // active expiry timer period per worker
  std::string password;              // AUTH; empty = no auth
};

// Pub/sub bus and its clients (resp, kv-json, chat). The first four size the
// bus in the shared segment and need a restart to change; the rest apply per
// connection and follow a reload.
struct PubSubConf {
  uint32_t ring_slots = 1024;         // messages the ring holds before it overwrites
  uint32_t max_message_bytes = 4096;  // one message's payload
  uint32_t max_channel_bytes = 256;   // one channel or pattern name
  // Shared entries: one per (channel or pattern, process) and per (client
  // address, process).
  uint32_t channel_table_size = 16384;
  uint32_t max_channels_per_client = 1000;  // channels + patterns of one connection
  uint32_t max_patterns_per_client = 128;   // of those, patterns (each costs every PUBLISH a match)
  uint32_t max_pattern_bytes = 128;         // one pattern's length
  // Subscriptions of all clients of one IP address together, over all
  // workers (0 = no cap), so a few hosts cannot fill the table for all.
  uint32_t max_channels_per_address = 4096;
  uint32_t publish_rate_per_client = 10'000;  // messages per second one connection may publish
  uint64_t output_hard_limit = 32ull << 20;   // subscriber output above this: disconnect now
  uint64_t output_soft_limit = 8ull << 20;    // above this for output_soft_seconds: disconnect
  uint32_t output_soft_seconds = 60;
  std::string reserved_prefix = "$sys.";  // only admins publish here ("" = nothing reserved)
  std::string admin_token;     // RESP `AUTH admin TOKEN`, chat `/auth TOKEN`; "" = no admins
  uint32_t chat_history = 20;  // chat: messages replayed on /join
};

enum class FsyncPolicy : uint8_t { kAlways, kEverySec, kNo };
const char* FsyncPolicyName(FsyncPolicy p);

// The store on disk (docs/persistence.md). Without a `persistence` section it
// is off; with one it is on unless `enabled: false`. dir and enabled need a
// restart to change; the rest follows a reload.
struct PersistenceConf {
  bool enabled = false;
  std::string dir;  // absolute; required when enabled
  FsyncPolicy fsync = FsyncPolicy::kEverySec;
  uint32_t snapshot_every_ms =
      3'600'000;  // a snapshot at least this often while writes happen (0 = never on time)
  uint64_t snapshot_log_bytes =
      64ull << 20;  // ...or once the logs grew this much since the last one (0 = never on size)
};

struct Config {
  std::string path;         // the file this was read from (absolute)
  uint32_t workers = 0;     // resolved: "auto" = number of online CPUs
  std::string pidfile;      // absolute
  std::string user, group;  // drop to these when started as root ("" = stay)
  // Workers chroot here after the sockets, logs and segment are open (""
  // = no chroot; needs `user`). Paths in the config are then as seen inside
  // it: the master (and its snapshot children, running as `user`) prefixes
  // them with this folder.
  std::string chroot;
  // While kv.password is empty, RESP and kv-json clients from outside
  // local_networks are refused (Redis' protected mode).
  bool protected_mode = true;
  std::vector<Cidr> local_networks;
  // Peers whose X-Forwarded-For names the client (nginx set_real_ip_from):
  // used for the access log, ops_allow and the per-address limits.
  std::vector<Cidr> trusted_proxies;
  uint64_t shm_size = 256ull << 20;  // the shared segment, fixed at start
  std::vector<ListenerConf> listeners;
  std::vector<UpstreamConf> upstreams;
  TimeoutsConf timeouts;
  LimitsConf limits;
  LoggingConf logging;
  KvConf kv;
  PubSubConf pubsub;
  PersistenceConf persistence;

  // A path from the config as the master sees it: inside `chroot` when one
  // is set (workers, after chroot, use the path as written).
  std::string Outside(const std::string& inner) const {
    return chroot.empty() || inner.empty() || inner[0] != '/' ? inner : chroot + inner;
  }
};

struct ConfigResult {
  Config config;
  std::vector<std::string> errors;  // "file:line:col: key: what is wrong, what was expected"
  bool ok() const { return errors.empty(); }
};

// The engine's settings from the config (the engine headers know nothing of
// the config; the config layer sits above them).
namespace kv {
Limits LimitsFrom(const KvConf& c);
}
namespace bus {
Sizes SizesFrom(const PubSubConf& c);
}

// Reads and validates a YAML file. Relative paths in it are resolved against
// the directory that holds the file. Never throws.
ConfigResult LoadConfig(const std::string& path);
// Same, from text (tests); `path` is used for messages and relative paths.
ConfigResult ParseConfig(const std::string& text, const std::string& path);

}  // namespace pf
