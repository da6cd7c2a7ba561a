// TERN PATCH: this whole file is tern's (vendor/monoio/TERN-PATCH.md, "multishot receive").
//! Provided-buffer rings (`IORING_REGISTER_PBUF_RING`, Linux 5.19): a group of equal buffers
//! the kernel picks from when a receive with `IOSQE_BUFFER_SELECT` has bytes to deliver, so an
//! armed receive holds no memory until data arrives.
//!
//! Everything here is single-threaded (one ring, one thread): the only state shared with
//! another party is the ring's tail, shared with the kernel and published with a release
//! store, as liburing's `io_uring_buf_ring_advance` does.

use std::{
    cell::Cell,
    fmt, io,
    ops::{Deref, DerefMut},
    ptr::NonNull,
    rc::Rc,
    sync::atomic::{AtomicU16, Ordering},
};

use io_uring::types::BufRingEntry;

/// One anonymous private mapping, unmapped on drop.
struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

impl Mapping {
    fn new(len: usize) -> io::Result<Self> {
        // SAFETY: a fresh anonymous mapping; the kernel picks the (page-aligned) address.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mapping {
            // SAFETY: mmap succeeded, so the address is not null.
            ptr: unsafe { NonNull::new_unchecked(ptr.cast()) },
            len,
        })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmapping our own mapping once.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// A registered buffer group: the ring of entries the kernel reads and the buffers they name.
pub(crate) struct BufRing {
    ring: Mapping,
    bufs: Mapping,
    group: u16,
    entries: u16,
    buf_len: usize,
    /// Our copy of the tail: the count of entries ever handed to the kernel (wrapping).
    tail: Cell<u16>,
    /// Buffers currently lent out as [`RingBuf`]s or filled by the kernel and not yet taken.
    lent: Cell<u16>,
    /// Set when the driver went away while operations might still use the memory: then the
    /// mappings are leaked rather than unmapped under the kernel (see `UringInner::drop`).
    leak: Cell<bool>,
}

impl BufRing {
    /// Maps the ring and `entries` buffers of `buf_len` bytes and hands every buffer to the
    /// ring. `entries` must be a power of two (kernel rule), at most 32768.
    pub(crate) fn new(group: u16, entries: u16, buf_len: usize) -> io::Result<Self> {
        if entries == 0 || !entries.is_power_of_two() || entries > 32768 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "buffer ring entries must be a power of two, 1..=32768",
            ));
        }
        if buf_len == 0 || buf_len > u32::MAX as usize {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "buffer length must be 1..=u32::MAX",
            ));
        }
        let ring = Mapping::new(entries as usize * std::mem::size_of::<BufRingEntry>())?;
        let bufs = Mapping::new(entries as usize * buf_len)?;
        let this = BufRing {
            ring,
            bufs,
            group,
            entries,
            buf_len,
            tail: Cell::new(0),
            lent: Cell::new(entries),
            leak: Cell::new(false),
        };
        for bid in 0..entries {
            this.put(bid);
        }
        Ok(this)
    }

    pub(crate) fn ring_addr(&self) -> u64 {
        self.ring.ptr.as_ptr() as u64
    }

    pub(crate) fn entries(&self) -> u16 {
        self.entries
    }

    pub(crate) fn group(&self) -> u16 {
        self.group
    }

    pub(crate) fn set_leak(&self) {
        self.leak.set(true);
    }

    /// Buffers in the ring, available to the kernel.
    pub(crate) fn available(&self) -> u16 {
        self.entries - self.lent.get()
    }

    fn buf_ptr(&self, bid: u16) -> *mut u8 {
        debug_assert!(bid < self.entries);
        // SAFETY: bid < entries, so the offset stays inside the buffers' mapping.
        unsafe { self.bufs.ptr.as_ptr().add(bid as usize * self.buf_len) }
    }

    /// Hands buffer `bid` back to the kernel.
    pub(crate) fn put(&self, bid: u16) {
        assert!(
            bid < self.entries,
            "buffer id {bid} not in group {}",
            self.group
        );
        let tail = self.tail.get();
        let base = self.ring.ptr.as_ptr().cast::<BufRingEntry>();
        // SAFETY: the slot index is masked into the ring; the kernel reads only slots below
        // the published tail, and this slot is at the (not yet published) tail. Writing the
        // fields one by one leaves entry 0's `resv` (the shared tail) untouched.
        unsafe {
            let entry = &mut *base.add((tail & (self.entries - 1)) as usize);
            entry.set_addr(self.buf_ptr(bid) as u64);
            entry.set_len(self.buf_len as u32);
            entry.set_bid(bid);
        }
        let tail = tail.wrapping_add(1);
        self.tail.set(tail);
        self.lent.set(self.lent.get() - 1);
        // SAFETY: the tail field is a u16 inside the ring's first entry, suitably aligned;
        // the kernel reads it with an acquire load, so the entry written above is visible.
        unsafe {
            let shared = BufRingEntry::tail(base) as *const AtomicU16;
            (*shared).store(tail, Ordering::Release);
        }
    }

    /// Gives back a buffer the kernel filled for a completion nobody will take.
    pub(crate) fn recycle_filled(&self, bid: u16) {
        self.taken();
        self.put(bid);
    }

    /// Marks a buffer the kernel filled (a completion named it) as taken out of the ring.
    fn taken(&self) {
        self.lent.set(self.lent.get() + 1);
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        if self.leak.get() {
            // The kernel may still hold requests that write into these pages.
            std::mem::forget(std::mem::replace(&mut self.ring, Mapping::dangling()));
            std::mem::forget(std::mem::replace(&mut self.bufs, Mapping::dangling()));
        }
    }
}

impl Mapping {
    /// A zero-length stand-in whose drop unmaps nothing harmful (munmap of length 0 fails
    /// with EINVAL and touches nothing).
    fn dangling() -> Self {
        Mapping {
            ptr: NonNull::dangling(),
            len: 0,
        }
    }
}

/// Bytes the kernel received into a ring buffer, owned until dropped; dropping it gives the
/// buffer back to the ring at once. A zero-length `RingBuf` (no buffer) means end of file.
pub struct RingBuf {
    ring: Option<Rc<BufRing>>,
    bid: u16,
    start: usize,
    len: usize,
}

impl RingBuf {
    /// Takes buffer `bid` of `ring`, filled by the kernel with `len` bytes.
    pub(crate) fn filled(ring: Rc<BufRing>, bid: u16, len: usize) -> Self {
        assert!(len <= ring.buf_len, "completion longer than its buffer");
        ring.taken();
        RingBuf {
            ring: Some(ring),
            bid,
            start: 0,
            len,
        }
    }

    pub(crate) fn eof() -> Self {
        RingBuf {
            ring: None,
            bid: 0,
            start: 0,
            len: 0,
        }
    }

    /// Bytes held (0 at end of file).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether this is the end of the stream (no bytes).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The buffer's id in its group (`None` at end of file).
    pub fn buffer_id(&self) -> Option<u16> {
        self.ring.as_ref().map(|_| self.bid)
    }

    /// Drops the first `n` bytes from the view (the buffer stays held until drop).
    pub fn advance(&mut self, n: usize) {
        assert!(n <= self.len, "advance past the end");
        self.start += n;
        self.len -= n;
    }

    fn ptr(&self) -> *mut u8 {
        match &self.ring {
            // SAFETY: start <= buf_len, inside the buffer.
            Some(r) => unsafe { r.buf_ptr(self.bid).add(self.start) },
            None => NonNull::dangling().as_ptr(),
        }
    }
}

impl Deref for RingBuf {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        // SAFETY: the kernel wrote `len` bytes from `start` into a buffer this value owns
        // exclusively: it is out of the ring until drop.
        unsafe { std::slice::from_raw_parts(self.ptr(), self.len) }
    }
}

impl DerefMut for RingBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`; `&mut self` makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr(), self.len) }
    }
}

impl Drop for RingBuf {
    fn drop(&mut self) {
        if let Some(ring) = self.ring.take() {
            ring.put(self.bid);
        }
    }
}

impl fmt::Debug for RingBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RingBuf")
            .field("buffer_id", &self.buffer_id())
            .field("len", &self.len)
            .finish()
    }
}

// SAFETY: the bytes live in a mapping that does not move and outlives this value (it holds the
// ring); `read_ptr` and `bytes_init` describe exactly the bytes held, so a write may send them.
unsafe impl crate::buf::IoBuf for RingBuf {
    fn read_ptr(&self) -> *const u8 {
        self.ptr()
    }

    fn bytes_init(&self) -> usize {
        self.len
    }
}
// END TERN PATCH
