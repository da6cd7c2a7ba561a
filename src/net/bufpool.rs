//! A worker's pool of I/O buffers, lent to connections only while they move bytes.
//!
//! A connection that is idle holds no buffer: its reads wait for readiness first (see `pump`),
//! so memory per idle connection is its TLS state, not its buffers, and 10,000 idle clients do
//! not pin 10,000 × 2 × 32 KiB. One pool per worker, single-threaded: no locks.

use std::cell::RefCell;

use monoio::buf::{IoBuf, IoBufMut};

/// A fixed-size, always initialised buffer from a [`BufPool`], with a fill mark.
pub struct PoolBuf {
    mem: Box<[u8]>,
    len: usize,
}

impl PoolBuf {
    /// The bytes filled so far (by a read, or by [`set_filled`](Self::set_filled)).
    pub fn filled(&self) -> &[u8] {
        &self.mem[..self.len]
    }

    /// The whole buffer, to be written into; follow with `set_filled`.
    pub fn space(&mut self) -> &mut [u8] {
        &mut self.mem
    }

    pub fn set_filled(&mut self, len: usize) {
        assert!(len <= self.mem.len(), "fill mark past the end");
        self.len = len;
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn capacity(&self) -> usize {
        self.mem.len()
    }
}

// SAFETY: the pointers are to the boxed slice, which does not move when a PoolBuf moves and
// lives as long as it; `len` never exceeds the slice (set_init is given counts the kernel wrote
// within `bytes_total`).
unsafe impl IoBuf for PoolBuf {
    fn read_ptr(&self) -> *const u8 {
        self.mem.as_ptr()
    }

    fn bytes_init(&self) -> usize {
        self.len
    }
}

// SAFETY: as above; the whole slice is initialised memory, so any prefix may be marked filled.
unsafe impl IoBufMut for PoolBuf {
    fn write_ptr(&mut self) -> *mut u8 {
        self.mem.as_mut_ptr()
    }

    fn bytes_total(&mut self) -> usize {
        self.mem.len()
    }

    unsafe fn set_init(&mut self, init_len: usize) {
        self.len = init_len;
    }
}

pub struct BufPool {
    size: usize,
    /// Free buffers kept for reuse; more than this go back to the allocator.
    keep: usize,
    free: RefCell<Vec<Box<[u8]>>>,
}

impl BufPool {
    pub fn new(size: usize, keep: usize) -> BufPool {
        BufPool {
            size,
            keep,
            free: RefCell::new(Vec::new()),
        }
    }

    pub fn size(&self) -> usize {
        self.size
    }

    /// An empty buffer of `size` bytes.
    pub fn get(&self) -> PoolBuf {
        let mem = self
            .free
            .borrow_mut()
            .pop()
            .unwrap_or_else(|| vec![0u8; self.size].into_boxed_slice());
        PoolBuf { mem, len: 0 }
    }

    pub fn put(&self, buf: PoolBuf) {
        let mut free = self.free.borrow_mut();
        if free.len() < self.keep {
            free.push(buf.mem);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_reused_up_to_the_limit() {
        let pool = BufPool::new(1024, 1);
        let mut a = pool.get();
        a.space()[..3].copy_from_slice(b"abc");
        a.set_filled(3);
        assert_eq!(a.filled(), b"abc");
        let ptr = a.filled().as_ptr();
        pool.put(a);
        let b = pool.get();
        assert_eq!(b.mem.as_ptr(), ptr, "reused");
        assert!(b.is_empty() && b.capacity() == 1024);
        let c = pool.get(); // the pool is empty: a new one
        pool.put(b);
        pool.put(c); // over the limit: dropped
        assert_eq!(pool.free.borrow().len(), 1);
    }

    #[test]
    #[should_panic(expected = "fill mark")]
    fn fill_mark_cannot_pass_the_end() {
        BufPool::new(8, 1).get().set_filled(9);
    }
}
