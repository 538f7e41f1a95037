// shared/kv/index.h: a shard's index (bucket chains), its LRU order and
// the item operations on top of them (lookup with lazy expiry, write,
// remove, eviction). Called with the shard's lock held. The hot lookups are
// inline; the crash-consistency order of each write is in arena.cc's
// invariant.
#pragma once

#include <cstdint>
#include <cstring>
#include <string_view>

#include "shared/kv/kv.h"
#include "shared/kv/layout.h"

namespace pf::kv::internal {

// This process' persistence hook (kv.h SetJournal).
extern Journal* g_journal;

// Journal helpers: called with the shard's lock held, after the change.
inline void JPut(ShardHeader* s, std::string_view key, std::string_view value, int64_t expire_at) {
  if (g_journal) g_journal->Put(s->index, ++s->seq, key, value, expire_at);
}
inline void JDel(ShardHeader* s, const Item* it) {
  if (g_journal)
    g_journal->Del(s->index, ++s->seq, std::string_view(const_cast<Item*>(it)->key(), it->key_len));
}

inline void LruLinkHead(ShardHeader* s, uint32_t off) {
  Item* it = It(s, off);
  it->lru_prev = 0;
  it->lru_next = s->lru_head;
  if (s->lru_head)
    It(s, s->lru_head)->lru_prev = off;
  else
    s->lru_tail = off;
  s->lru_head = off;
}
inline void LruUnlink(ShardHeader* s, uint32_t off) {
  Item* it = It(s, off);
  if (it->lru_prev)
    It(s, it->lru_prev)->lru_next = it->lru_next;
  else
    s->lru_head = it->lru_next;
  if (it->lru_next)
    It(s, it->lru_next)->lru_prev = it->lru_prev;
  else
    s->lru_tail = it->lru_prev;
  it->lru_prev = it->lru_next = 0;
}
inline void BucketUnlink(ShardHeader* s, uint32_t off) {
  Item* it = It(s, off);
  uint32_t* link = &Buckets(s)[BucketFromHash(it->hash, s->nbuckets)];
  while (*link && *link != off) link = &It(s, *link)->hnext;
  if (*link) *link = it->hnext;
}

inline uint32_t Find(ShardHeader* s, uint64_t hash, std::string_view key) {
  for (uint32_t o = Buckets(s)[BucketFromHash(hash, s->nbuckets)]; o; o = It(s, o)->hnext) {
    Item* it = It(s, o);
    if (it->hash == hash && it->key_len == key.size() &&
        std::memcmp(it->key(), key.data(), key.size()) == 0)
      return o;
  }
  return 0;
}

// Marks an item as written now, for WATCH: a rewrite, or a TTL changed in place.
inline void StampWrite(ShardHeader* s, Item* it) {
  it->version = static_cast<uint32_t>(++s->writes);
}

// Deletes a live item: kill (durable), then the derived structures.
void Remove(const StoreHeader* h, ShardHeader* s, uint32_t off);

// Approximate LRU (as memcached's ITEM_UPDATE_INTERVAL): an item touched
// within the last keys/8 stamps is already near the head; leaving it saves
// the writes to its LRU neighbours' cache lines on most GETs of hot keys.
inline void Touch(ShardHeader* s, uint32_t off) {
  Item* it = It(s, off);
  if (s->clock - it->stamp < s->keys / 8) return;
  it->stamp = ++s->clock;
  if (s->lru_head == off) return;
  PF_KV_CRASH(TouchStamp);
  LruUnlink(s, off);
  PF_KV_CRASH(TouchUnlink);
  LruLinkHead(s, off);
}

// Finds a live, unexpired item; removes it if expired (lazy expiry).
inline uint32_t LookupLive(const StoreHeader* h, ShardHeader* s, uint64_t hash,
                           std::string_view key, uint64_t now) {
  uint32_t off = Find(s, hash, key);
  if (off && Expired(It(s, off), now)) {
    Remove(h, s, off);
    s->expired++;
    return 0;
  }
  return off;
}

// A free chunk for an item of `need` bytes: free lists, bump, larger
// classes, then coalescing, then (allkeys-lru) eviction from this shard's LRU
// tail, never evicting `protect` (the item being overwritten).
Status Reserve(const StoreHeader* h, ShardHeader* s, uint64_t need, uint32_t protect,
               uint32_t* out);

// Writes key=value as a new item; `old` (0 if none) is the live item it
// replaces. See the invariant above for the order.
Status WriteItem(const StoreHeader* h, ShardHeader* s, uint64_t hash, std::string_view key,
                 std::string_view value, int64_t expire_at, uint32_t old);

}  // namespace pf::kv::internal
