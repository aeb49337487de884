//! The gateway-wide pool of free arena chunks: a reader that ends leaves the chunks whose
//! records are all gone to the next one, which spares it the page faults and zeroing of
//! fresh memory (every catch-up subscription starts new readers).

use std::sync::Mutex;

use bytes::BytesMut;

use super::arena::Arena;

/// Free chunks between readers, bounded: a reader that ends leaves the chunks whose
/// records are all gone for the next one.
#[derive(Debug)]
pub(super) struct ChunkPool {
    free: Mutex<Vec<BytesMut>>,
}

/// The gateway's pool: at most [`ChunkPool::MAX`] chunks (16 MiB) kept idle.
pub(super) static POOL: ChunkPool = ChunkPool::new();

impl ChunkPool {
    const MAX: usize = 64;

    pub(super) const fn new() -> ChunkPool {
        ChunkPool {
            free: Mutex::new(Vec::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<BytesMut>> {
        // The list stays valid whatever a panicking holder did.
        self.free.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn take(&self) -> Option<BytesMut> {
        self.lock().pop()
    }

    /// Keeps `chunk` if nothing else uses it any more and there is room.
    pub(super) fn give(&self, mut chunk: BytesMut) {
        if chunk.try_reclaim(Arena::CHUNK) && chunk.capacity() == Arena::CHUNK {
            let mut free = self.lock();
            if free.len() < Self::MAX {
                free.push(chunk);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{AlertContext, Parts, Record};

    #[test]
    fn a_new_arena_takes_the_free_chunks_an_ended_one_left() {
        let ctx = AlertContext::lasair();
        let pool: &'static ChunkPool = Box::leak(Box::new(ChunkPool::new()));
        let payload = vec![1u8; 1000];
        let cut = |arena: &mut Arena| ctx.record(arena, Parts::plain(0, 1, &payload));
        let mut first = Arena::with_pool(pool);
        let kept: Vec<Record> = (0..1000).map(|_| cut(&mut first)).collect();
        let chunks = first.fetched() as usize;
        assert!(chunks >= 3);
        drop(first);
        assert_eq!(pool.lock().len(), 0, "chunks still in use are not pooled");
        let mut second = Arena::with_pool(pool);
        drop(cut(&mut second));
        drop(second);
        let pooled = pool.lock().len();
        assert_eq!(pooled, 1, "a free chunk goes back");
        drop(kept);

        let mut third = Arena::with_pool(pool);
        let r = cut(&mut third);
        assert_eq!(pool.lock().len(), 0, "the new arena took the pooled chunk");
        assert_eq!(r.payload(), &payload[..]);
        // Never more than the bound.
        let many: Vec<Arena> = (0..ChunkPool::MAX + 5)
            .map(|_| {
                let mut a = Arena::with_pool(pool);
                drop(cut(&mut a));
                a
            })
            .collect();
        drop(many);
        assert_eq!(pool.lock().len(), ChunkPool::MAX);
    }
}
