// worker/json.h: the small JSON, base64 and UTF-8 helpers the kv-json codec
// and the HTTP endpoints share (parsing JSON is simdjson's job, not ours).
#pragma once

#include <string>
#include <string_view>

namespace pf::json {

// RFC 8259 string (quotes included). `s` must be valid UTF-8; control
// characters become \n, \t, ... or \u00XX.
void AppendJsonString(std::string* out, std::string_view s);
void AppendBase64(std::string* out, std::string_view bytes);
// Strict RFC 4648 (standard alphabet, padded). false: not base64.
bool DecodeBase64(std::string_view in, std::string* out);
bool IsUtf8(std::string_view s);

}  // namespace pf::json
