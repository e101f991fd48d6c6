// The shapes kernels hold an allocator in, forwarded by the derive:
// `&'a mut dyn FrameAllocator`, `&'a mut A`, `Box<dyn …>`, `Box<A>`, nested,
// and behind a lock (`#[frame_allocator(lock = …)]`). Each allocates from
// (and deallocates to) the allocator it holds.
use core::cell::{RefCell, RefMut};
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicBool, Ordering};

use framealloc::x86_64::PhysAddr;
use framealloc::{FrameAllocator, FrameDeallocator, FramePool, PhysFrame, Size4KiB};

fn frame(address: u64) -> PhysFrame {
    PhysFrame::containing_address(PhysAddr::new(address))
}

fn pool_with(addresses: &[u64]) -> FramePool<Size4KiB, 4> {
    let mut pool = FramePool::new();
    for &address in addresses {
        unsafe { pool.try_push(frame(address)) }.unwrap();
    }
    pool
}

#[derive(FrameAllocator)]
struct ByDyn<'a> {
    #[frame_allocator]
    inner: &'a mut dyn FrameAllocator<Size4KiB>,
    calls: u32,
}

#[derive(FrameAllocator)]
struct ByRef<'a, A> {
    inner: &'a mut A,
}

#[derive(FrameAllocator)]
struct ByConcreteRef<'a> {
    inner: &'a mut FramePool<Size4KiB, 4>,
}

#[derive(FrameAllocator)]
struct Boxed {
    inner: Box<dyn FrameAllocator<Size4KiB>>,
}

#[derive(FrameAllocator)]
struct BoxedPool(Box<FramePool<Size4KiB, 4>>);

#[derive(FrameAllocator)]
struct RefToBox<'a>(&'a mut Box<dyn FrameAllocator<Size4KiB> + Send>);

/// A minimal spin lock, standing in for `spin::Mutex`.
struct SpinLock<T> {
    locked: AtomicBool,
    value: core::cell::UnsafeCell<T>,
}

struct Guard<'a, T>(&'a SpinLock<T>);

impl<T> SpinLock<T> {
    fn new(value: T) -> Self {
        SpinLock { locked: AtomicBool::new(false), value: core::cell::UnsafeCell::new(value) }
    }
    fn lock(&self) -> Guard<'_, T> {
        while self.locked.swap(true, Ordering::Acquire) {}
        Guard(self)
    }
}

impl<T> Deref for Guard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        unsafe { &*self.0.value.get() }
    }
}

impl<T> DerefMut for Guard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        unsafe { &mut *self.0.value.get() }
    }
}

impl<T> Drop for Guard<'_, T> {
    fn drop(&mut self) {
        self.0.locked.store(false, Ordering::Release);
    }
}

/// A handle to a global allocator behind a lock.
#[derive(FrameAllocator)]
struct Shared<'a> {
    #[frame_allocator(lock = lock)]
    frames: &'a SpinLock<FramePool<Size4KiB, 4>>,
}

/// Owned, behind a `RefCell`, locked through a function path.
#[derive(FrameAllocator)]
struct Cell<A> {
    #[frame_allocator(lock = RefCell::borrow_mut)]
    inner: RefCell<A>,
    label: &'static str,
}

#[derive(FrameAllocator)]
enum Any<'a> {
    Dyn(&'a mut dyn FrameAllocator<Size4KiB>),
    Boxed(Box<FramePool<Size4KiB, 4>>),
    Locked {
        #[frame_allocator(lock = borrow_mut)]
        inner: &'a RefCell<FramePool<Size4KiB, 4>>,
    },
}

/// Shared ownership: `Arc<lock>`, locked through the `Arc`.
#[derive(FrameAllocator)]
struct ArcShared {
    #[frame_allocator(lock = lock)]
    frames: std::sync::Arc<SpinLock<FramePool<Size4KiB, 4>>>,
}

/// `std::sync::Mutex::lock` returns a `Result`: a function unwraps it.
#[derive(FrameAllocator)]
struct StdMutex {
    #[frame_allocator(lock = self::lock_std)]
    frames: std::sync::Mutex<FramePool<Size4KiB, 4>>,
}

fn lock_std<A>(mutex: &std::sync::Mutex<A>) -> std::sync::MutexGuard<'_, A> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn lock_cell<A>(cell: &RefCell<A>) -> RefMut<'_, A> {
    cell.borrow_mut()
}

#[derive(FrameAllocator)]
struct ByFunction<'a> {
    #[frame_allocator(lock = self::lock_cell)]
    inner: &'a RefCell<FramePool<Size4KiB, 4>>,
}

fn main() {
    let mut pool = pool_with(&[0x1000, 0x2000]);
    {
        let mut by_dyn = ByDyn { inner: &mut pool, calls: 0 };
        by_dyn.calls += 1;
        assert_eq!(by_dyn.allocate_frame(), Some(frame(0x2000)));
        assert_eq!(by_dyn.calls, 1);
    }
    {
        let mut by_ref = ByRef { inner: &mut pool };
        assert_eq!(by_ref.allocate_frame(), Some(frame(0x1000)));
        assert_eq!(by_ref.allocate_frame(), None);
        unsafe { by_ref.deallocate_frame(frame(0x3000)) };
    }
    assert_eq!(pool.frames(), [frame(0x3000)]);
    {
        let mut concrete = ByConcreteRef { inner: &mut pool };
        assert_eq!(concrete.allocate_frame(), Some(frame(0x3000)));
    }
    assert!(pool.is_empty());

    let mut boxed = Boxed { inner: Box::new(pool_with(&[0x4000])) };
    assert_eq!(boxed.allocate_frame(), Some(frame(0x4000)));
    assert_eq!(boxed.allocate_frame(), None);

    let mut boxed_pool = BoxedPool(Box::new(pool_with(&[0x5000])));
    assert_eq!(boxed_pool.allocate_frame(), Some(frame(0x5000)));
    unsafe { boxed_pool.deallocate_frame(frame(0x6000)) };
    assert_eq!(boxed_pool.0.frames(), [frame(0x6000)]);

    let mut inner: Box<dyn FrameAllocator<Size4KiB> + Send> = Box::new(pool_with(&[0x7000]));
    assert_eq!(RefToBox(&mut inner).allocate_frame(), Some(frame(0x7000)));

    let global = SpinLock::new(pool_with(&[0x8000, 0x9000]));
    let mut one = Shared { frames: &global };
    let mut two = Shared { frames: &global };
    assert_eq!(one.allocate_frame(), Some(frame(0x9000)));
    assert_eq!(two.allocate_frame(), Some(frame(0x8000)));
    unsafe { one.deallocate_frame(frame(0xa000)) };
    assert_eq!(two.allocate_frame(), Some(frame(0xa000)));
    assert!(!global.locked.load(Ordering::Relaxed), "the guard is dropped after each call");

    let mut cell = Cell { inner: RefCell::new(pool_with(&[0xb000])), label: "cell" };
    assert_eq!(cell.allocate_frame(), Some(frame(0xb000)));
    assert!(cell.inner.try_borrow_mut().is_ok(), "the borrow ends with the call");
    assert_eq!(cell.label, "cell");

    let mut source = pool_with(&[0xc000]);
    let shared = RefCell::new(pool_with(&[0xd000]));
    let mut any = [
        Any::Dyn(&mut source),
        Any::Boxed(Box::new(pool_with(&[0xe000]))),
        Any::Locked { inner: &shared },
    ];
    let got: Vec<_> = any.iter_mut().map(FrameAllocator::<Size4KiB>::allocate_frame).collect();
    assert_eq!(got, [Some(frame(0xc000)), Some(frame(0xe000)), Some(frame(0xd000))]);
    // `Any` is no `FrameDeallocator`: `dyn FrameAllocator` does not free.
    drop(any);
    assert!(shared.borrow().is_empty());

    let shared = std::sync::Arc::new(SpinLock::new(pool_with(&[0x2_0000])));
    let mut arc = ArcShared { frames: shared.clone() };
    assert_eq!(arc.allocate_frame(), Some(frame(0x2_0000)));
    assert!(!shared.locked.load(Ordering::Relaxed));

    let mut std_mutex = StdMutex { frames: std::sync::Mutex::new(pool_with(&[0x3_0000])) };
    assert_eq!(std_mutex.allocate_frame(), Some(frame(0x3_0000)));
    unsafe { std_mutex.deallocate_frame(frame(0x4_0000)) };
    assert_eq!(std_mutex.frames.lock().unwrap().frames(), [frame(0x4_0000)]);

    let by_function_cell = RefCell::new(pool_with(&[0x1_0000]));
    let mut by_function = ByFunction { inner: &by_function_cell };
    assert_eq!(by_function.allocate_frame(), Some(frame(0x1_0000)));
    unsafe { by_function.deallocate_frame(frame(0xf000)) };
    assert_eq!(by_function_cell.borrow().frames(), [frame(0xf000)]);
}
