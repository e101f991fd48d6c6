// Lifetimes, const generics, where clauses, defaulted parameters and a
// parameter named like the derive's own page-size parameter.
use framealloc::x86_64::PhysAddr;
use framealloc::{FrameAllocator, FramePool, NoAllocator, PhysFrame, Size4KiB, Tagged, TaggedFrameAllocator};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Purpose {
    PageTable,
}

#[derive(FrameAllocator)]
#[frame_allocator(unsafe tagged(method = allocate, tag = Purpose))]
struct Boot {
    next: u64,
    log: Vec<Purpose>,
}

impl Boot {
    fn allocate(&mut self, purpose: Purpose) -> Option<PhysFrame> {
        self.log.push(purpose);
        self.next += 4096;
        Some(PhysFrame::containing_address(PhysAddr::new(self.next)))
    }
}

// A borrowing field with a lifetime of the struct.
#[derive(FrameAllocator)]
struct PageTables<'a> {
    view: Tagged<'a, Boot, Purpose>,
}

// Const generics, a where clause, a default, and a parameter named `__S`.
#[derive(FrameAllocator)]
struct Pooled<'a, __S, const N: usize, B = NoAllocator>
where
    __S: Copy + Default,
{
    #[frame_allocator]
    pool: FramePool<Size4KiB, N>,
    label: &'a str,
    extra: (__S, B),
}

// A lifetime bound and a generic field behind a reference-holding enum.
#[derive(FrameAllocator)]
enum Either<'a, 'b: 'a, A: FrameAllocator<Size4KiB>> {
    Left(A),
    Right { #[frame_allocator] tables: PageTables<'b>, note: &'a str },
}

fn main() {
    let mut boot = Boot { next: 0, log: Vec::new() };
    {
        let mut tables = PageTables { view: boot.tagged(Purpose::PageTable) };
        assert_eq!(tables.allocate_frame().unwrap().start_address().as_u64(), 0x1000);
        let mut either: Either<'_, '_, NoAllocator> = Either::Right { tables, note: "r" };
        assert_eq!(either.allocate_frame().unwrap().start_address().as_u64(), 0x2000);
    }
    assert_eq!(boot.log, [Purpose::PageTable, Purpose::PageTable]);

    let mut pooled: Pooled<'_, u8, 3> = Pooled {
        pool: FramePool::new(),
        label: "p",
        extra: (0, NoAllocator),
    };
    assert_eq!(pooled.allocate_frame(), None);
    assert_eq!((pooled.label, pooled.extra.0, pooled.pool.capacity()), ("p", 0, 3));
    let _ = pooled.extra.1;
}
