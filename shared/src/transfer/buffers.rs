//! Chunk buffers reused across the chunks of a transfer (and across transfers of a process).
//!
//! Why a pool: a transfer moves every byte through a few multi-MiB buffers (a fetched
//! plaintext chunk, its ciphertext part). Allocated fresh per chunk, they are freed on
//! whichever thread drops them last (a blocking hash task, an upload task, the SDK), and glibc
//! keeps freed blocks in per-thread arenas: RSS then grows with the recording's size (150 MiB
//! for 1 GiB measured) unless the process runs with `MALLOC_ARENA_MAX=1`. Forcing every buffer
//! to be a fresh mmap instead costs about a quarter of the throughput (page faults and zeroing
//! on every chunk). Reusing the buffers avoids both: the pages stay resident and owned by the
//! pool, so peak RSS is the pipeline's own bound whatever the recording's size.
//!
//! A buffer goes back to the pool when the last `Bytes` made from it is dropped (by
//! `Bytes::from_owner`), wherever that happens. Buffers stay initialised (zeroed once, when
//! allocated, by the kernel's fresh pages), so writers such as the encryptor overwrite them
//! without zeroing 8 MiB per chunk first. The pool keeps at most [`MAX_IDLE`] buffers;
//! the pipeline's bound (fetches in flight + uploads in flight + the chunk in hand) stays
//! below that with the shipped settings, so steady state allocates nothing.

use std::sync::{Mutex, OnceLock};

use bytes::Bytes;

/// Idle buffers kept at most.
pub const MAX_IDLE: usize = 12;

/// Requests are rounded up to a multiple of this, so a plaintext chunk and its slightly larger
/// ciphertext share one size class (capacity never touched costs no RSS).
const SIZE_CLASS: usize = 1 << 20;

pub struct BufferPool {
    idle: Mutex<Vec<Vec<u8>>>,
    max_idle: usize,
}

static GLOBAL: OnceLock<BufferPool> = OnceLock::new();

impl BufferPool {
    pub const fn new(max_idle: usize) -> BufferPool {
        BufferPool {
            idle: Mutex::new(Vec::new()),
            max_idle,
        }
    }

    /// The process's pool.
    pub fn global() -> &'static BufferPool {
        GLOBAL.get_or_init(|| BufferPool::new(MAX_IDLE))
    }

    /// An empty buffer with room for at least `capacity` bytes.
    pub fn take(&'static self, capacity: usize) -> PooledBuf {
        let class = capacity.div_ceil(SIZE_CLASS).max(1) * SIZE_CLASS;
        let reused = {
            let mut idle = self.lock();
            // The smallest idle buffer that fits, so small requests do not hold big buffers.
            let best = idle
                .iter()
                .enumerate()
                .filter(|(_, b)| b.len() >= class)
                .min_by_key(|(_, b)| b.len())
                .map(|(i, _)| i);
            best.map(|i| idle.swap_remove(i))
        };
        PooledBuf {
            // `vec![0; n]` is calloc: fresh pages, zero without a memset, resident once touched.
            buf: reused.unwrap_or_else(|| vec![0u8; class]),
            len: 0,
            pool: self,
        }
    }

    /// Buffers idle now (for tests and benchmarks).
    pub fn idle(&self) -> usize {
        self.lock().len()
    }

    fn give_back(&self, buf: Vec<u8>) {
        if buf.is_empty() {
            return;
        }
        let mut idle = self.lock();
        if idle.len() < self.max_idle {
            idle.push(buf);
        } else if let Some(smallest) = idle
            .iter_mut()
            .filter(|b| b.len() < buf.len())
            .min_by_key(|b| b.len())
        {
            // Full: keep the bigger of the two, so the pool follows the sizes in use.
            *smallest = buf;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Vec<u8>>> {
        // A panic while holding the lock leaves a valid Vec: keep using it.
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A buffer on loan from a [`BufferPool`]; returned when dropped. Its first `len` bytes are the
/// content; the rest is initialised room to write into.
pub struct PooledBuf {
    buf: Vec<u8>,
    len: usize,
    pool: &'static BufferPool,
}

impl PooledBuf {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends `data`, growing the buffer if the request underestimated.
    pub fn append(&mut self, data: &[u8]) {
        let end = self.len + data.len();
        if end > self.buf.len() {
            self.buf.resize(end, 0);
        }
        self.buf[self.len..end].copy_from_slice(data);
        self.len = end;
    }

    /// The room after the content, to write into before [`advance`](Self::advance).
    pub fn room(&mut self) -> &mut [u8] {
        &mut self.buf[self.len..]
    }

    /// Counts `n` bytes written into [`room`](Self::room) as content.
    pub fn advance(&mut self, n: usize) {
        self.len = (self.len + n).min(self.buf.len());
    }

    /// Immutable bytes that return the buffer to the pool when the last clone is dropped.
    pub fn freeze(self) -> Bytes {
        Bytes::from_owner(self)
    }
}

impl AsRef<[u8]> for PooledBuf {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl Drop for PooledBuf {
    fn drop(&mut self) {
        self.pool.give_back(std::mem::take(&mut self.buf));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool() -> &'static BufferPool {
        Box::leak(Box::new(BufferPool::new(2)))
    }

    #[test]
    fn a_buffer_comes_back_when_its_last_bytes_are_dropped() {
        let pool = pool();
        let mut b = pool.take(1000);
        b.append(b"chunk");
        let frozen = b.freeze();
        let clone = frozen.clone();
        assert_eq!(&frozen[..], b"chunk");
        drop(frozen);
        assert_eq!(pool.idle(), 0, "a clone still holds it");
        drop(clone);
        assert_eq!(pool.idle(), 1);
        // Reused, empty, same allocation.
        let mut again = pool.take(10);
        assert!(again.is_empty());
        assert_eq!(again.as_ref(), b"");
        assert!(again.room().len() >= SIZE_CLASS);
        assert_eq!(pool.idle(), 0);
        // Written room counts once advanced; an underestimated request grows.
        again.room()[..3].copy_from_slice(b"abc");
        again.advance(3);
        again.append(&vec![7u8; SIZE_CLASS]);
        assert_eq!(again.len(), SIZE_CLASS + 3);
        assert_eq!(&again.as_ref()[..4], b"abc\x07");
    }

    #[test]
    fn a_small_request_gets_the_smallest_fitting_buffer() {
        let pool = pool();
        let big = pool.take(3 * SIZE_CLASS);
        let small = pool.take(10);
        drop(big);
        drop(small);
        let got = pool.take(10);
        assert_eq!(got.buf.len(), SIZE_CLASS);
        let got_big = pool.take(2 * SIZE_CLASS + 1);
        assert!(got_big.buf.len() >= 3 * SIZE_CLASS);
    }

    #[test]
    fn a_full_pool_keeps_the_bigger_buffers() {
        let pool = pool();
        let bufs: Vec<PooledBuf> = [1, 1, 4]
            .iter()
            .map(|m| pool.take(m * SIZE_CLASS))
            .collect();
        drop(bufs);
        assert_eq!(pool.idle(), 2);
        let caps: Vec<usize> = pool.lock().iter().map(Vec::len).collect();
        assert!(caps.contains(&(4 * SIZE_CLASS)), "{caps:?}");
    }
}
