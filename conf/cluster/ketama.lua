-- conf/cluster/ketama.lua: haproxy picks the node of a /kv key as nutcracker
-- does (ketama over the node names, the key hashed with fnv1a_32 as
-- nutcracker computes it, "{tag}" hash tags), so HTTP and RESP agree on
-- where each key lives. `tools/preforkctl cluster` writes the ring (160
-- points per node, computed with MD5 as nutcracker does) to the file
-- that replaces @RING@ in the copy it gives haproxy.
local points, names = {}, {}
for i, p in ipairs(dofile("@RING@")) do
  points[i] = p[1]
  names[i] = p[2]
end

-- nutcracker's hash_fnv1a_32: FNV-1a, each byte sign-extended (its key is a
-- char *).
local function fnv1a_32(s)
  local h = 0x811C9DC5
  for i = 1, #s do
    local b = s:byte(i)
    if b >= 0x80 then b = b | 0xFFFFFF00 end
    h = ((h ~ b) * 0x01000193) & 0xFFFFFFFF
  end
  return h
end

local function hash_tag(key)
  local open = key:find("{", 1, true)
  if open then
    local close = key:find("}", open + 1, true)
    if close and close - open > 1 then return key:sub(open + 1, close - 1) end
  end
  return key
end

local function unescape(s)
  if s:find("%", 1, true) == nil then return s end
  if s:find("%%%X") or s:find("%%.%X") or s:find("%%.?$") then return nil end
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

-- /kv/KEY or /kv/NS/KEY (stored as NS^KEY, as preforkd's /kv does); nil for
-- a listing or a path /kv would refuse.
local function kv_key(path)
  local rest = path:sub(5)
  local slash = rest:find("/", 1, true)
  if slash == nil then
    local key = unescape(rest)
    if key == nil or key == "" then return nil end
    return key
  end
  if rest:find("/", slash + 1, true) then return nil end
  local ns, key = unescape(rest:sub(1, slash - 1)), unescape(rest:sub(slash + 1))
  if ns == nil or key == nil or ns == "" or key == "" then return nil end
  return ns .. "^" .. key
end

-- The node's name, or "" for a listing (which haproxy then refuses).
core.register_fetches("pf_kv_node", function(txn)
  local path = txn.sf:path()
  if path:sub(1, 4) ~= "/kv/" then return "" end
  local key = kv_key(path)
  if key == nil or #points == 0 then return "" end
  local h = fnv1a_32(hash_tag(key))
  local lo, hi = 1, #points + 1
  while lo < hi do
    local mid = (lo + hi) // 2
    if points[mid] < h then lo = mid + 1 else hi = mid end
  end
  if lo > #points then lo = 1 end
  return names[lo]
end)
