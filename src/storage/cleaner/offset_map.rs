//! The cleaner's key -> latest offset map (Kafka's `SkimpyOffsetMap`): an open-addressing table
//! of 24-byte slots (a 128-bit hash of the key and the offset), never more than the memory it is
//! given (`log.cleaner.dedupe.buffer.size`). It starts small and grows (doubling, at most to what
//! the budget leaves beside the old table while it is rehashed), so a small partition costs little; once it cannot
//! grow it reports itself full and the cleaning round stops at the last key it holds (the rest
//! of the dirty section waits for the next round, as in Kafka).
//!
//! Keys are identified by their hash alone, like Kafka's MD5: two SipHash-1-3 digests of the key
//! with different prefixes. A collision would make a key look superseded by another's later
//! record, so 128 bits are used, for a chance below 2^-64 even at billions of keys.

use std::hash::{DefaultHasher, Hasher};

/// One slot: the key's hash and `offset + 1` (0: empty).
#[derive(Clone, Copy, Default)]
struct Slot {
    hash: [u64; 2],
    offset_plus_one: i64,
}

/// Bytes per slot, for sizing the table from a memory budget.
pub const SLOT_BYTES: usize = std::mem::size_of::<Slot>();
/// Kafka's `log.cleaner.io.buffer.load.factor` default.
const LOAD_FACTOR: f64 = 0.9;
const INITIAL_SLOTS: usize = 1024;

/// A key's 128-bit identity.
pub fn key_hash(key: &[u8]) -> [u64; 2] {
    let mut a = DefaultHasher::new();
    a.write_u8(0x5a);
    a.write(key);
    let mut b = DefaultHasher::new();
    b.write_u64(0x9e37_79b9_7f4a_7c15);
    b.write(key);
    [a.finish(), b.finish()]
}

pub struct OffsetMap {
    slots: Vec<Slot>,
    len: usize,
    max_slots: usize,
    /// The largest offset put since the last clear, -1 if none.
    latest_offset: i64,
}

impl OffsetMap {
    /// A map that never holds more than `memory_bytes` of slots (at least one initial table).
    pub fn new(memory_bytes: usize) -> Self {
        Self {
            slots: Vec::new(),
            len: 0,
            max_slots: (memory_bytes / SLOT_BYTES).max(16),
            latest_offset: -1,
        }
    }

    /// Empties the map, keeping its table for the next round.
    pub fn clear(&mut self) {
        self.slots.fill(Slot::default());
        self.len = 0;
        self.latest_offset = -1;
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn latest_offset(&self) -> i64 {
        self.latest_offset
    }

    /// Bytes held by the table now.
    pub fn memory_bytes(&self) -> usize {
        self.slots.capacity() * SLOT_BYTES
    }

    fn limit(slots: usize) -> usize {
        (slots as f64 * LOAD_FACTOR) as usize
    }

    /// Whether `more` new keys surely fit (growing the table if needed and allowed).
    pub fn has_room_for(&mut self, more: usize) -> bool {
        loop {
            if self.len.saturating_add(more) <= Self::limit(self.slots.len()) {
                return true;
            }
            if !self.grow() {
                return false;
            }
        }
    }

    /// Grows the table (doubling, or to what the budget leaves beside the old table while it is
    /// rehashed); false when it cannot grow.
    fn grow(&mut self) -> bool {
        let old = self.slots.len();
        let new = if old == 0 {
            INITIAL_SLOTS.min(self.max_slots)
        } else {
            old.saturating_mul(2).min(self.max_slots.saturating_sub(old))
        };
        if new <= old {
            return false;
        }
        let previous = std::mem::replace(&mut self.slots, vec![Slot::default(); new]);
        self.len = 0;
        for slot in previous.into_iter().filter(|s| s.offset_plus_one != 0) {
            self.insert(slot.hash, slot.offset_plus_one);
        }
        true
    }

    fn position(&self, hash: [u64; 2]) -> usize {
        let len = self.slots.len().max(1);
        let mut i = (hash[0] % len as u64) as usize;
        loop {
            match self.slots.get(i) {
                Some(s) if s.offset_plus_one != 0 && s.hash != hash => i = (i + 1) % len,
                _ => return i,
            }
        }
    }

    fn insert(&mut self, hash: [u64; 2], offset_plus_one: i64) {
        let i = self.position(hash);
        if let Some(slot) = self.slots.get_mut(i) {
            if slot.offset_plus_one == 0 {
                self.len += 1;
            }
            *slot = Slot { hash, offset_plus_one };
        }
    }

    /// Records that `hash`'s latest offset is `offset`. The caller checked `has_room_for`.
    pub fn put(&mut self, hash: [u64; 2], offset: i64) {
        if self.slots.is_empty() && !self.grow() {
            return;
        }
        self.insert(hash, offset.saturating_add(1));
        self.latest_offset = self.latest_offset.max(offset);
    }

    /// The latest offset recorded for `hash`.
    pub fn get(&self, hash: [u64; 2]) -> Option<i64> {
        if self.slots.is_empty() {
            return None;
        }
        let slot = self.slots.get(self.position(hash))?;
        (slot.offset_plus_one != 0).then_some(slot.offset_plus_one - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_latest_offset_per_key_within_its_memory() {
        let budget = 64 * 1024;
        let mut map = OffsetMap::new(budget);
        let mut stored = 0;
        for i in 0..100_000i64 {
            let key = format!("key-{}", i % 5000);
            let h = key_hash(key.as_bytes());
            if map.get(h).is_none() && !map.has_room_for(1) {
                break;
            }
            map.put(h, i);
            stored = i;
        }
        assert!(map.memory_bytes() <= budget, "{} > {budget}", map.memory_bytes());
        assert!(map.len() > 1000, "{}", map.len());
        assert_eq!(map.latest_offset(), stored);
        // Every key seen has its latest offset.
        for i in (stored.saturating_sub(500)..=stored).rev() {
            let key = format!("key-{}", i % 5000);
            assert!(map.get(key_hash(key.as_bytes())).is_some_and(|o| o >= i));
        }
        assert_eq!(map.get(key_hash(b"never")), None);
        map.clear();
        assert!(map.is_empty() && map.get(key_hash(b"key-1")).is_none());
    }

    #[test]
    fn a_large_budget_holds_all_keys() {
        let mut map = OffsetMap::new(128 << 20);
        for round in 0..3i64 {
            for k in 0..20_000i64 {
                assert!(map.has_room_for(1));
                map.put(key_hash(&k.to_be_bytes()), round * 20_000 + k);
            }
        }
        assert_eq!(map.len(), 20_000);
        assert_eq!(map.get(key_hash(&7i64.to_be_bytes())), Some(40_007));
        assert!(map.memory_bytes() < 4 << 20);
    }
}
