//! Procedural macros for [`framealloc`](https://docs.rs/framealloc).
//!
//! Do not depend on this crate directly: `framealloc` re-exports both macros,
//! and the generated code refers to `framealloc` paths.
//!
//! The derive is built in phases, one module each: `ast` reads the input
//! into a model, `attr` parses the attributes, `valid` decides everything
//! to generate (collecting every error in a `ctxt::Errors`), `expand` only
//! writes that plan out. `closure` is `frame_allocator!`. Both macros share
//! `names` (the words of their syntax), `sizes` and `tokens` (reading
//! arguments from tokens, rebuilding groups).

mod ast;
mod attr;
mod closure;
mod ctxt;
mod expand;
mod generics;
mod manifest;
mod names;
mod reach;
mod sizes;
mod tokens;
mod valid;
mod verbatim;

use proc_macro::TokenStream;

/// Derives `FrameAllocator` (and `FrameDeallocator`) for a type that holds
/// an allocator, or that has a method allocating given a tag.
///
/// `use framealloc::FrameAllocator;` imports both this derive and the trait.
///
/// # Forwarding to a field
///
/// On a struct, the derive forwards to one field: the only field, or the one
/// marked `#[frame_allocator]`. It implements `FrameAllocator<S>` for every
/// page size `S` the field's type supports, and `FrameDeallocator<S>`
/// likewise; the impls are bounded by `where Field: FrameAllocator<S>`.
/// This is safe to generate: the field's own impl carries the promise.
///
/// ```
/// use framealloc::{FrameAllocator, FrameDeallocator, FramePool, PhysFrame, Size4KiB};
/// use framealloc::x86_64::PhysAddr;
///
/// #[derive(FrameAllocator)]
/// struct CountedPool {
///     #[frame_allocator]
///     pool: FramePool<Size4KiB, 8>,
///     refills: u32,
/// }
///
/// let mut frames = CountedPool { pool: FramePool::new(), refills: 0 };
/// let frame = PhysFrame::containing_address(PhysAddr::new(0x5000));
/// // SAFETY: the frame is unused.
/// unsafe { frames.deallocate_frame(frame) };
/// assert_eq!(frames.allocate_frame(), Some(frame));
/// assert_eq!(frames.allocate_frame(), None);
/// # let _ = frames.refills;
/// ```
///
/// # References, boxes and locks
///
/// Kernels hold allocators behind references, in boxes and behind locks,
/// and `x86_64` implements `FrameAllocator` for none of these (nor may any
/// other crate: the orphan rule). The derive reaches through them:
///
/// - a field of type `&'a mut A` (also `&'a mut dyn FrameAllocator<Size4KiB>`)
///   or `Box<A>` (also `Box<dyn …>`), nested or not, forwards to `A` with
///   plain dereferences: the same code as a hand-written impl;
/// - a field marked `#[frame_allocator(lock = lock)]` is locked once per call
///   (`self.field.lock()`, through references, boxes and `Arc`), and the
///   allocator inside the guard is used; the guard is dropped before the call
///   returns. `lock = borrow_mut` fits a `RefCell`, and a path with `::`
///   names a function instead of a method: `lock = RefCell::borrow_mut`,
///   `lock = crate::frames::lock` (it is given `&field`). The guard must
///   dereference to the allocator: `std::sync::Mutex::lock` returns a
///   `Result`, so name a function that unwraps it. The allocator's type is
///   the last type argument of the locked type, as in `spin::Mutex<A>`,
///   `RefCell<A>` or `lock_api::Mutex<R, A>`.
///
/// ```
/// use core::cell::RefCell;
/// use framealloc::{FrameAllocator, FramePool, NoAllocator, Size4KiB};
///
/// #[derive(FrameAllocator)]
/// struct Borrowed<'a> {
///     inner: &'a mut dyn FrameAllocator<Size4KiB>,
/// }
///
/// #[derive(FrameAllocator)]
/// struct Boxed(Box<FramePool<Size4KiB, 4>>);
///
/// /// A handle to an allocator shared behind a lock.
/// #[derive(FrameAllocator)]
/// struct Shared<'a> {
///     #[frame_allocator(lock = borrow_mut)]
///     frames: &'a RefCell<FramePool<Size4KiB, 4>>,
/// }
///
/// let mut never = NoAllocator;
/// assert_eq!(Borrowed { inner: &mut never }.allocate_frame(), None);
/// assert_eq!(Boxed(Box::new(FramePool::new())).allocate_frame(), None);
/// let pool = RefCell::new(FramePool::new());
/// assert_eq!(Shared { frames: &pool }.allocate_frame(), None);
/// ```
///
/// A `Box` needs the `alloc` crate in your crate (which has it if it names
/// `Box`); `framealloc` itself stays `no_std` without `alloc`: the generated
/// code dereferences the box where it is written. A field type spelled
/// `&'a mut T` or `Box<T>` always forwards to `T`, even if you implemented
/// `FrameAllocator` for `&mut T` yourself.
///
/// # Dispatching over an enum
///
/// On an enum, every variant forwards to its field (the only one, or the
/// marked one) with a `match`: no `dyn`, no vtable.
///
/// ```
/// use framealloc::{FrameAllocator, FramePool, NoAllocator, Size4KiB};
///
/// #[derive(FrameAllocator)]
/// enum Frames<A> {
///     /// A reclaim path: never allocate.
///     Never(NoAllocator),
///     Pool(FramePool<Size4KiB, 4>),
///     Other { #[frame_allocator] inner: A, name: &'static str },
/// }
///
/// let mut frames: Frames<NoAllocator> = Frames::Never(NoAllocator);
/// assert!(FrameAllocator::<Size4KiB>::allocate_frame(&mut frames).is_none());
/// ```
///
/// # Shared allocators
///
/// A field marked `#[frame_allocator(shared)]` holds a
/// [`SharedFrameAllocator`] (an allocator used through `&self` from several
/// CPUs at once, such as [`AtomicBitmapAllocator`]). The derive then
/// implements, for every page size `S` the field supports:
///
/// - `SharedFrameAllocator<S>` and `SharedFrameDeallocator<S>` for the type,
///   forwarding every method to the field, the batch methods
///   (`allocate_frames`, `allocate_frames_near`, `deallocate_frames`)
///   included, so the field's own batch code runs;
/// - `FrameAllocator<S>` and `FrameDeallocator<S>` for `&Type`, so that a
///   shared reference is usable wherever `x86_64` wants an allocator:
///   `map_to(page, frame, flags, &mut &frames)`. `&mut SharedView::new(&frames)`
///   works as well, as it does for any shared allocator.
///
/// The field is used as it is, through `&self`: a field of type `&'a A` works
/// because `&A` is a shared allocator when `A` is one, and so does
/// `&'a dyn SharedFrameAllocator<Size4KiB>`. The type itself gets no
/// `FrameAllocator` impl (that would take `&mut`, which a shared allocator
/// does not need). On an enum, mark the field of every variant `shared`, or
/// none. `shared` does not combine with `lock = …` (a shared allocator
/// synchronises itself) nor with `unsafe tagged(…)`. A concrete field type
/// that is no shared allocator is reported once, at the field.
///
/// ```
/// use core::sync::atomic::AtomicU64;
/// use framealloc::alloc::{AtomicBitmapAllocator, FirmwareRegion, MemoryRegion, RegionKind, normalize};
/// use framealloc::{FrameAllocator, PhysFrame, SharedFrameAllocator, SharedView, Size4KiB};
///
/// /// What every CPU shares: the frames and a CPU count.
/// #[derive(FrameAllocator)]
/// struct Kernel<'a> {
///     #[frame_allocator(shared)]
///     frames: AtomicBitmapAllocator<'a>,
///     cpus: u32,
/// }
///
/// static STORAGE: [AtomicU64; 64] = [const { AtomicU64::new(0) }; 64];
/// static KERNEL: Kernel<'static> = Kernel { frames: AtomicBitmapAllocator::new(&STORAGE), cpus: 2 };
///
/// let firmware = [FirmwareRegion::new(0x20_0000, 0x40_0000, RegionKind::Usable)];
/// let mut regions = [MemoryRegion::default(); 4];
/// let (map, _) = normalize(&firmware, &mut regions, Default::default()).unwrap();
/// // SAFETY: an example: the frames are never touched, and nothing else
/// // manages them.
/// unsafe { KERNEL.frames.load_map(&map) }.unwrap();
///
/// fn page_tables(frames: &mut impl FrameAllocator<Size4KiB>) -> Option<PhysFrame> {
///     frames.allocate_frame() // as `map_to` would
/// }
/// // From any CPU: through `&Kernel`, through a view, or through `&self`.
/// let a = page_tables(&mut &KERNEL).unwrap();
/// let b = page_tables(&mut SharedView::new(&KERNEL)).unwrap();
/// let c: PhysFrame<Size4KiB> = KERNEL.allocate_frame().unwrap();
/// assert!(a != b && b != c && a != c);
/// # let _ = KERNEL.cpus;
/// ```
///
/// # A tagged allocation method
///
/// An allocator whose allocation takes an argument (a bootloader's region
/// type, a zone, flags) gets [`TaggedFrameAllocator`] from a method
/// `fn(&mut self, tag: Tag) -> Option<PhysFrame<S>>`, and, with a default
/// tag, `FrameAllocator<S>` too. The derive cannot check that the method
/// never returns a frame that is in use, so the attribute must say `unsafe`:
/// writing it is the promise an `unsafe impl` would make.
///
/// ```
/// use framealloc::{FrameAllocator, PhysFrame, TaggedFrameAllocator};
/// use framealloc::x86_64::PhysAddr;
///
/// #[derive(Clone, Copy, Debug, PartialEq)]
/// enum MemoryRegionType { PageTable, Kernel }
///
/// #[derive(FrameAllocator)]
/// #[frame_allocator(unsafe tagged(
///     method = allocate_frame,
///     tag = MemoryRegionType,
///     default = MemoryRegionType::PageTable,
/// ))]
/// struct BootFrameAllocator { next: u64, map: Vec<(u64, MemoryRegionType)> }
///
/// impl BootFrameAllocator {
///     fn allocate_frame(&mut self, region_type: MemoryRegionType) -> Option<PhysFrame> {
///         self.next += 4096;
///         self.map.push((self.next, region_type));
///         Some(PhysFrame::containing_address(PhysAddr::new(self.next)))
///     }
/// }
///
/// let mut boot = BootFrameAllocator { next: 0, map: Vec::new() };
/// // `map_to(page, frame, flags, &mut boot)` allocates page tables…
/// FrameAllocator::allocate_frame(&mut boot).unwrap();
/// // …and `&mut boot.tagged(tag)` allocates for any other purpose.
/// boot.tagged(MemoryRegionType::Kernel).allocate_frame().unwrap();
/// assert_eq!(boot.map, [(0x1000, MemoryRegionType::PageTable), (0x2000, MemoryRegionType::Kernel)]);
/// ```
///
/// Without `default = …`, the type is a `TaggedFrameAllocator` only, not a
/// `FrameAllocator`: `map_to(page, frame, flags, &mut boot)` then fails with
///
/// ```text
/// error[E0277]: the trait bound `BootFrameAllocator: FrameAllocator<Size4KiB>` is not satisfied
///    |     let _ = map_to(&mut boot);
///    |                    ^^^^^^^^^ unsatisfied trait bound
/// help: the trait `FrameAllocator<Size4KiB>` is not implemented for `BootFrameAllocator`
///    = help: the following other types implement trait `FrameAllocator<S>`: …
/// ```
///
/// Two fixes: add `default = Tag::Value` to `tagged(…)`, or pass a view with
/// the tag fixed, `&mut boot.tagged(MemoryRegionType::PageTable)`. (The derive
/// cannot add the hint to this error: the message belongs to `x86_64`'s trait.)
///
/// When the tagged method is an inherent method named `allocate_frame`, as in
/// the bootloader above, it hides the trait's method of the same name:
/// `boot.allocate_frame()` is error E0061 ("this method takes 1 argument but
/// 0 arguments were supplied"). Call the trait's method as
/// `FrameAllocator::allocate_frame(&mut boot)`; `map_to` and other generic
/// code are not affected.
///
/// Writing `tagged(…)` without `unsafe` is an error that says why it is needed:
///
/// ```compile_fail
/// # use framealloc::{FrameAllocator, PhysFrame};
/// #[derive(FrameAllocator)]
/// #[frame_allocator(tagged(method = allocate, tag = u8))]
/// struct Zones;
/// # impl Zones { fn allocate(&mut self, _: u8) -> Option<PhysFrame> { None } }
/// ```
///
/// # Attribute reference
///
/// | where | attribute | meaning |
/// |---|---|---|
/// | field | `#[frame_allocator]` | the field to forward to (needed when there are several) |
/// | field | `#[frame_allocator(lock = method)]` | the field is a lock: lock it with `field.method()` (or `path(&field)` for `lock = a::path`) on each call |
/// | field | `#[frame_allocator(shared)]` | the field is a `SharedFrameAllocator`: implement the shared traits for the type, and `FrameAllocator`/`FrameDeallocator` for `&Type` |
/// | type | `#[frame_allocator(crate = path)]` | `framealloc` is at `path` (for crates that re-export it) |
/// | type | `#[frame_allocator(unsafe tagged(…))]` | implement from a tagged method (fields are then not used) |
/// | in `tagged` | `method = name` (required) | `Self::name` (also `name::<Args>`), or a path to any function of that shape |
/// | in `tagged` | `tag = Type` (required) | the tag's type, `TaggedFrameAllocator::Tag` |
/// | in `tagged` | `default = expr` | also implement `FrameAllocator<S>`, allocating with `expr` |
/// | in `tagged` | `sizes(Size4KiB, Size2MiB, …)` | page sizes to implement (default `Size4KiB`); the method must return each, e.g. by being generic |
///
/// Both kinds of entry may share one attribute, separated by commas:
/// `#[frame_allocator(crate = my::fa, unsafe tagged(…))]`. Page sizes are
/// recognised by name and need no import.
///
/// A tagged type implementing several sizes makes `.tagged(tag)` ambiguous;
/// use `framealloc::Tagged::new(&mut alloc, tag)` with the size annotated.
/// `FrameDeallocator` is not derived for tagged types: deallocation takes no
/// tag, so implement it by hand if the type frees frames.
///
/// # What is generated
///
/// Impls with fully qualified paths through a hidden module of `framealloc`,
/// each `#[automatically_derived]`, with the type's generics, lifetimes,
/// const generics and `where` clauses carried through and one page-size
/// parameter added (renamed if the type already uses its name). A concrete
/// forwarded field type is also checked at compile time, so a field that is
/// no allocator at all is reported at the field rather than at the first use.
/// The code compiles warning-free under `#![deny(warnings)]`,
/// `#![deny(missing_docs)]`, clippy's pedantic and nursery groups, in
/// `#![no_std]` crates, on editions 2021 and 2024. Generated parameters and
/// locals cannot capture the user's names: the page-size parameter,
/// `__FrameallocPageSize`, is renamed if it occurs anywhere in the input (a
/// type macro in a field type could still produce it unseen: do not name a
/// type so), and locals are mixed-site `__framealloc_…` names. No `#[allow]`
/// is generated except the user's own `#[allow(unsafe_code)]`, so a crate may
/// `forbid` any lint.
///
/// Expressions the derive does not need to understand pass through as
/// tokens: a block as a const generic argument (`Pool<{ if A { 8 } else { 4 } }>`),
/// any array length, any `default = …` expression. syn's `full` feature stays
/// off; the macro crate builds faster for it.
///
/// # `unsafe_code`
///
/// `FrameAllocator` is an unsafe trait, so the derived impls are
/// `unsafe impl`s, but only `unsafe tagged(…)` makes a promise of the user's
/// own. Its impls carry the span of the `tagged` written after that
/// `unsafe`, so rustc's `unsafe_code` lint reports them there: a crate under
/// `#![forbid(unsafe_code)]` cannot use `unsafe tagged(…)`, and under
/// `#![deny(unsafe_code)]` it takes `#[allow(unsafe_code)]` on the type
/// (the derive copies that allowance onto its impls). `#[expect(unsafe_code)]`
/// on the type is an error with that advice: the impls are items beside the
/// type, so no expectation on the type can be fulfilled by them. Clippy's
/// `undocumented_unsafe_blocks` does not ask for a `// SAFETY:` comment on
/// the impls, which it takes for macro output. Field forwarding and
/// enum dispatch promise nothing the field's own impl does not; their impls
/// are macro-generated from end to end, which rustc does not lint, so
/// crates that forbid unsafe code can derive them.
///
/// # Errors
///
/// Misuse is reported with spanned, specific messages, all errors of one
/// input at once and one error per mistake: unions, a multi-field struct or
/// variant with no marked field, two marked fields, fieldless structs or
/// variants, a marker on a variant or with unknown arguments, unknown or
/// duplicate keys, `tagged` without `unsafe` (or with `unsafe` after it)
/// or without `method`/`tag`, unknown page sizes, `#[repr(packed)]` on a
/// forwarding struct. A method with the wrong signature is reported at
/// `method = …` with the expected signature. A forwarded field that is not
/// an allocator is reported at its type, whole.
///
/// After an error the derive still emits stand-in impls (`FrameAllocator`,
/// `FrameDeallocator`, and `TaggedFrameAllocator` with the written tag type
/// for a tagged type), so code using the type reports nothing further. A
/// field of a type that exists but is not an allocator (say a `Vec<u64>`)
/// cannot be told apart at expansion time; a compile-time check reports it
/// at the field, and the impls' bounds go through that check, so uses of the
/// type report nothing further either (for a valid field the bounds
/// normalise to the field type, and the impls are what they would be
/// without the check; this relies on rustc not reporting obligations that
/// involve an already-reported error, which the ui-tests pin). Fields that no
/// crate could make an allocator (a primitive, a tuple, an array, a pointer)
/// are caught by the derive itself. Limits: a field whose type names the
/// type's own parameters (`inner: A`) is checked only where the type is
/// used, by rustc, at each use, as for any generic bound. And where an error
/// leaves the allocator field unknown (two unmarked fields, say), the
/// stand-in covers every page size, so a use that leaves the size to
/// inference (rare: `map_to` fixes it) asks for a type annotation; where the
/// field is known, the stand-in keeps the real bounds.
///
/// If you depend on `framealloc` under another name
/// (`fa = { package = "framealloc", … }`), the derive finds that name in your
/// `Cargo.toml` and writes `::fa`: it reads the `[dependencies]`,
/// `[target.….dependencies]` and (when no ordinary dependency is
/// `framealloc`) `[dev-dependencies]` tables, in any TOML form, and for
/// `fa = { workspace = true }` the workspace root's
/// `[workspace.dependencies]`. Where it cannot tell (a manifest it cannot
/// read, two different names for the same dependency kind, a re-export
/// through another crate) it writes `::framealloc`, and the paths fail with
/// E0433, "cannot find `framealloc` in the crate root": then write
/// `#[frame_allocator(crate = fa)]`, which always wins.
///
/// [`TaggedFrameAllocator`]: https://docs.rs/framealloc/latest/framealloc/tagged/trait.TaggedFrameAllocator.html
/// [`SharedFrameAllocator`]: https://docs.rs/framealloc/latest/framealloc/alloc/shared/trait.SharedFrameAllocator.html
/// [`AtomicBitmapAllocator`]: https://docs.rs/framealloc/latest/framealloc/alloc/atomic_bitmap/struct.AtomicBitmapAllocator.html
#[proc_macro_derive(FrameAllocator, attributes(frame_allocator))]
pub fn derive_frame_allocator(input: TokenStream) -> TokenStream {
    match syn::parse2::<syn::DeriveInput>(verbatim::hide(input.into())) {
        Ok(input) => verbatim::restore(expand::derive(&input)).into(),
        Err(error) => error.into_compile_error().into(),
    }
}

/// Turns a closure into a frame allocator.
///
/// ```text
/// frame_allocator!(ALLOCATE [, DEALLOCATE] [, state = expr] [, size = Size] [, crate = path])
/// ```
///
/// - `ALLOCATE` is a closure literal `|| expr` (or `move || …`, or
///   `|| -> Option<PhysFrame<S>> { … }`) returning `Option<PhysFrame<S>>`;
/// - `DEALLOCATE`, optional, is `|frame| …`: with it the result is also a
///   `FrameDeallocator<S>`;
/// - `state = expr` moves `expr` into the allocator and hands `&mut` to it
///   to each closure, which then take it first: `|state| …` and
///   `|state, frame| …`. Two closures that both capture the same free list
///   by `&mut` cannot borrow-check; with `state` they share it;
/// - `size = Size4KiB | Size2MiB | Size1GiB` fixes the page size where the
///   closure does not (it needs no import); otherwise it is inferred;
/// - `crate = path` names `framealloc` for crates that re-export it. A
///   dependency under another name (`fa = { package = "framealloc" }`) is
///   found in your `Cargo.toml` as for the derive (see there); where it is
///   not, the call fails with E0433, "cannot find `framealloc` in the crate
///   root", and `crate = fa` fixes it.
///
/// The named entries may come in any position. The macro expands to a call
/// of the `unsafe fn`s `framealloc::from_fn` / `from_fns` (`from_state` /
/// `from_state_fns` with `state`), never to an
/// `unsafe` block of its own: your `unsafe { … }` around it is the promise
/// that the closure only returns unused frames, each once.
///
/// ```
/// use framealloc::{frame_allocator, FrameAllocator, PhysFrame};
/// use framealloc::x86_64::PhysAddr;
///
/// #[derive(Clone, Copy)]
/// enum MemoryRegionType { PageTable }
///
/// struct BootFrameAllocator { next: u64 }
/// impl BootFrameAllocator {
///     fn allocate_frame(&mut self, _: MemoryRegionType) -> Option<PhysFrame> {
///         self.next += 4096;
///         Some(PhysFrame::containing_address(PhysAddr::new(self.next)))
///     }
/// }
///
/// let mut boot = BootFrameAllocator { next: 0 };
/// // Captures `boot` by `&mut` and the region type by value; no lifetimes.
/// // SAFETY: `boot` hands out every frame once.
/// let mut tables = unsafe {
///     frame_allocator!(|| boot.allocate_frame(MemoryRegionType::PageTable))
/// };
/// assert_eq!(tables.allocate_frame().unwrap().start_address().as_u64(), 0x1000);
/// ```
///
/// With deallocation into shared state, and an explicit size:
///
/// ```
/// use framealloc::{frame_allocator, FrameAllocator, FrameDeallocator, PhysFrame};
/// use framealloc::x86_64::PhysAddr;
///
/// let free = vec![PhysFrame::containing_address(PhysAddr::new(0x20_0000))];
/// // SAFETY: `free` holds unused frames; deallocated frames go back to it.
/// let mut huge = unsafe {
///     frame_allocator!(
///         state = free,
///         |free| free.pop(),
///         |free, frame| free.push(frame),
///         size = Size2MiB,
///     )
/// };
/// let frame = huge.allocate_frame().unwrap();
/// assert_eq!(huge.allocate_frame(), None);
/// // SAFETY: the frame is unused.
/// unsafe { huge.deallocate_frame(frame) };
/// assert_eq!(huge.allocate_frame(), Some(frame));
/// ```
///
/// Forgetting `unsafe` is error E0133 at the macro call:
///
/// ```compile_fail,E0133
/// let mut frames: Vec<framealloc::PhysFrame> = Vec::new();
/// let alloc = framealloc::frame_allocator!(|| frames.pop());
/// ```
///
/// The same holds inside an `unsafe fn`: the call carries the spans of your
/// arguments, so `unsafe_op_in_unsafe_fn` (denied by default from edition
/// 2024, and by this workspace) asks for the `unsafe { … }` block there too,
/// underlining the arguments.
///
/// Any Rust expression may appear in the closures and in `state = …`:
/// qualified paths and generic arguments with commas inside them
/// (`<FramePool<Size4KiB, 8> as FrameAllocator<Size4KiB>>::allocate_frame(&mut pool)`),
/// comparisons, casts. A closure passed through `macro_rules!` as `$c:expr`
/// is read inside the invisible group that carries it.
///
/// A closure that is not a literal (a variable holding one) is rejected with
/// a pointer to `framealloc::from_fn(f)`, as are closures with arguments for
/// allocation, `async` closures, a third closure, a doubled comma and unknown
/// entries. A closure returning anything but `Option<PhysFrame<S>>` is
/// reported at its body.
#[proc_macro]
pub fn frame_allocator(input: TokenStream) -> TokenStream {
    closure::expand(input.into()).into()
}

#[cfg(test)]
mod tests {
    //! The macros must never panic, whatever they are given: every prefix of
    //! a set of valid and invalid inputs is expanded, and must produce either
    //! code or `compile_error!`s, never a panic.

    use proc_macro2::{TokenStream, TokenTree};

    /// Every prefix of `input`, counted in top-level token trees.
    fn prefixes(input: &str) -> Vec<TokenStream> {
        let tokens: Vec<TokenTree> = input
            .parse::<TokenStream>()
            .expect("test input lexes")
            .into_iter()
            .collect();
        (0..=tokens.len())
            .map(|n| tokens[..n].iter().cloned().collect())
            .collect()
    }

    fn has_error(output: &TokenStream) -> bool {
        output.to_string().contains("compile_error")
    }

    const CLOSURE_INPUTS: &[&str] = &[
        "|| frames.pop()",
        "move || frames.pop(), |frame| free.push(frame), size = Size2MiB, crate = ::framealloc,",
        "|| -> Option<PhysFrame<Size4KiB>> { x.take::<A, B>() }, |f: PhysFrame<S>| drop(f)",
        "async move || a, |a, b| c, || d, e = f, size = , crate = 3",
        "|x| y, || , | , -> , size = Size1GiB, size = Size2MiB",
        "frames.pop(), ::x::<A, B>(c), || -> T",
        "state = vec![a, b], |s| s.pop(), |s, f: PhysFrame<Size4KiB>| s.push(f), state = , state",
        "|| <FramePool<Size4KiB, 8> as FrameAllocator<Size4KiB>>::allocate_frame(&mut pool), |f| a < b",
        "state = <HashMap<u8, PhysFrame> as Default>::default(), |m| m.remove(&<u8>::from(1)), \
         |m, f| { m.insert(<u8 as TryFrom<u32>>::try_from(1u32).unwrap(), f); }, size = <X as Y>::Z",
        "|| if a < b && c as u8 < <T as Q<A, B>>::V { x? < y } else { z::<A, B>() }, || <, >, <<",
    ];

    /// `tokens` wrapped in an invisible group, as `macro_rules!` passes a
    /// `$x:expr`.
    fn invisible(tokens: TokenStream) -> TokenTree {
        TokenTree::Group(proc_macro2::Group::new(
            proc_macro2::Delimiter::None,
            tokens,
        ))
    }

    /// The arguments of `tokens` (split at every top-level comma), each
    /// wrapped in an invisible group, commas kept.
    fn arguments_in_invisible_groups(tokens: &TokenStream) -> TokenStream {
        let mut out = Vec::new();
        let mut current = Vec::new();
        for token in tokens.clone() {
            if matches!(&token, TokenTree::Punct(p) if p.as_char() == ',') {
                out.push(invisible(current.drain(..).collect()));
                out.push(token);
            } else {
                current.push(token);
            }
        }
        if !current.is_empty() {
            out.push(invisible(current.into_iter().collect()));
        }
        out.into_iter().collect()
    }

    #[test]
    fn frame_allocator_never_panics() {
        for input in CLOSURE_INPUTS {
            for prefix in prefixes(input) {
                let _ = crate::closure::expand(prefix.clone());
                // The whole input in an invisible group, and each argument
                // in one (nested twice, as two `macro_rules!` would).
                let _ = crate::closure::expand(invisible(prefix.clone()).into());
                let once = arguments_in_invisible_groups(&prefix);
                let _ = crate::closure::expand(once.clone());
                let _ = crate::closure::expand(arguments_in_invisible_groups(&once));
            }
        }
    }

    #[test]
    fn frame_allocator_reads_closures_in_invisible_groups_and_qualified_paths() {
        let qualified = crate::closure::expand(CLOSURE_INPUTS[7].parse().unwrap()).to_string();
        assert!(
            qualified.contains("from_fns") && !has_error(&qualified.parse().unwrap()),
            "{qualified}"
        );
        let stateful = crate::closure::expand(
            CLOSURE_INPUTS[8]
                .replace(", size = <X as Y>::Z", "")
                .parse()
                .unwrap(),
        );
        assert!(
            stateful.to_string().contains("from_state_fns"),
            "{stateful}"
        );
        let grouped = arguments_in_invisible_groups(&"|| a.pop(), |f| b.push(f)".parse().unwrap());
        let twice = crate::closure::expand(arguments_in_invisible_groups(&grouped)).to_string();
        assert!(
            twice.contains("from_fns") && !twice.contains("compile_error"),
            "{twice}"
        );
    }

    #[test]
    fn frame_allocator_expands_to_a_call_or_errors() {
        let ok = crate::closure::expand("|| frames.pop()".parse().unwrap()).to_string();
        assert!(ok.contains("from_fn") && !ok.contains("unsafe"), "{ok}");
        let with_size =
            crate::closure::expand("|| None, |f| drop(f), size = Size2MiB".parse().unwrap());
        let text = with_size.to_string();
        assert!(
            text.contains("from_fns") && text.contains("Size2MiB"),
            "{text}"
        );
        let stateful =
            crate::closure::expand("state = v, |v| v.pop(), |v, f| v.push(f)".parse().unwrap());
        assert!(
            stateful.to_string().contains("from_state_fns"),
            "{stateful}"
        );
        for input in [
            "",
            "frames.pop()",
            "|x| x",
            "async || x",
            "|| a, || b",
            "|| a, |a, b| c",
            "state = s, || a",
            "state = s, |s| a, |f| b",
        ] {
            let output = crate::closure::expand(input.parse().unwrap());
            assert!(has_error(&output), "{input:?} gave {output}");
        }
    }

    const DERIVE_INPUTS: &[&str] = &[
        "struct A { #[frame_allocator] inner: X, stats: u64 }",
        "#[frame_allocator(crate = ::fa, unsafe tagged(method = m, tag = T, default = T::A, sizes(Size4KiB, Size2MiB)))] struct B<'a, T: Clone, const N: usize> where T: Copy { x: &'a T }",
        "#[frame_allocator(unsafe tagged(method = , tag = , default = , sizes()), unsafe, tagged, crate)] enum C { A(X), B { #[frame_allocator(x)] y: Y, z: Z }, #[frame_allocator] D }",
        "#[frame_allocator] union U { a: A, b: B }",
        "struct V<const N: usize = { if A { 1 } else { 2 } }> { p: Pool<{ if B { 1 } else { 2 } }>, q: [u8; if C { 1 } else { 2 }], r: <T as Q<A, B>>::Out }",
        "enum W { A(&'a mut dyn FrameAllocator<Size4KiB>), B(Box<dyn X + 'b>), C { #[frame_allocator(lock = lock)] l: &'a Mutex<A>, d: [u8; { 1 }] }, D(#[frame_allocator(lock = a::b, lock = c)] Arc<R, (), A>) }",
        "struct S<'a, A: ?Sized> where A: Sync { #[frame_allocator(shared)] a: &'a A, #[frame_allocator(shared, lock = l, shared = 1, shared(x))] b: u64 }",
        "enum T<'a> { A(#[frame_allocator(shared)] Bitmap<'a>), B { #[frame_allocator(shared)] c: (u8, u16) }, C(#[frame_allocator] Pool), D(#[frame_allocator(shared)] A) }",
        "#[frame_allocator(unsafe tagged(method = m, tag = u8))] struct U(#[frame_allocator(shared)] X);",
    ];

    #[test]
    fn derive_never_panics() {
        for input in DERIVE_INPUTS {
            for prefix in prefixes(input) {
                // Only complete items reach a derive; the rest must fail to parse.
                if let Ok(parsed) = syn::parse2::<syn::DeriveInput>(crate::verbatim::hide(prefix)) {
                    let _ = crate::verbatim::restore(crate::expand::derive(&parsed));
                }
            }
        }
    }

    #[test]
    fn derive_attribute_arguments_never_panic() {
        let arguments = "crate = ::fa, unsafe tagged(method = Self::m, tag = Vec<u8>, \
                         default = A::B | C, sizes(Size4KiB, x::Size2MiB, Size3MiB)), tagged(x), unsafe y";
        for prefix in prefixes(arguments) {
            for item in [
                "struct S(X);",
                "enum E { A(X), B { #[frame_allocator] y: Y } }",
            ] {
                let input = format!("#[frame_allocator({prefix})] {item}");
                let parsed = syn::parse_str::<syn::DeriveInput>(&input).expect("item parses");
                let _ = crate::expand::derive(&parsed);
            }
        }
        // A field's arguments, every prefix, with `shared` among them.
        for prefix in prefixes("shared, lock = l, shared = 1, shared(x), lock = m, colour") {
            for item in [
                format!("struct S(#[frame_allocator({prefix})] X);"),
                format!(
                    "enum E {{ A(#[frame_allocator({prefix})] X), B(#[frame_allocator(shared)] Y) }}"
                ),
            ] {
                let parsed = syn::parse_str::<syn::DeriveInput>(&item).expect("item parses");
                let _ = crate::expand::derive(&parsed);
            }
        }
        // Inside `tagged(…)`, every prefix of its own arguments.
        for prefix in prefixes("method = m, tag = T, default = T::A, sizes(Size2MiB), colour = 1") {
            let input = format!("#[frame_allocator(unsafe tagged({prefix}))] struct S;");
            let parsed = syn::parse_str::<syn::DeriveInput>(&input).expect("item parses");
            let _ = crate::expand::derive(&parsed);
        }
    }

    #[test]
    fn derive_reports_every_error_at_once() {
        let input = syn::parse2(DERIVE_INPUTS[2].parse().unwrap()).unwrap();
        let output = crate::expand::derive(&input);
        let errors = output.to_string().matches("compile_error").count();
        // sizes(), `unsafe` alone, `tagged` without parens, `crate` without a
        // value, the marker with an argument, the marker on a variant, and the
        // markers present with `tagged`.
        assert!(errors >= 6, "only {errors} errors: {output}");
    }

    fn derive(input: &str) -> String {
        let parsed = syn::parse_str::<syn::DeriveInput>(input).expect("item parses");
        crate::expand::derive(&parsed).to_string()
    }

    #[test]
    fn page_size_parameter_avoids_every_name_of_the_input() {
        // The name and its first renaming appear only inside field types.
        let out = derive("struct P { inner: Wrap<(__FrameallocPageSize, __FrameallocPageSize1)> }");
        assert!(
            out.contains("__FrameallocPageSize2 : :: framealloc :: __private :: PageSize"),
            "{out}"
        );
        assert!(!out.contains("< __FrameallocPageSize >"), "{out}");
    }

    #[test]
    fn forwarding_carries_generics_and_bounds() {
        let out = derive(
            "struct P<'a, __FrameallocPageSize: Copy, const N: usize, B = X> where B: Clone \
             { #[frame_allocator] pool: Pool<N>, extra: &'a (__FrameallocPageSize, B) }",
        );
        assert_eq!(out.matches("automatically_derived").count(), 2, "{out}");
        // The page-size parameter is renamed away from the user's parameter.
        assert!(
            out.contains("__FrameallocPageSize1 : :: framealloc :: __private :: PageSize"),
            "{out}"
        );
        assert!(
            out.contains(
                "B : Clone , Pool < N > : :: framealloc :: __private :: FrameAllocator < __FrameallocPageSize1 >"
            ),
            "{out}"
        );
        assert!(
            out.contains("FrameDeallocator < __FrameallocPageSize1 >"),
            "{out}"
        );
        // Defaults are dropped from the impl's parameters.
        assert!(!out.contains("= X"), "{out}");
        // `Pool<N>` mentions a parameter: no compile-time field probe.
        assert!(!out.contains("FieldProbe"), "{out}");
    }

    #[test]
    fn concrete_field_types_are_probed_with_lifetimes_elided() {
        let out = derive("struct V<'a> { view: Tagged<'a, Boot, Purpose> }");
        assert!(
            out.contains("FieldProbe :: < Tagged < '_ , Boot , Purpose > >"),
            "{out}"
        );
    }

    #[test]
    fn shared_fields_forward_every_shared_method_and_serve_references() {
        let out =
            derive("struct K<'a> { #[frame_allocator(shared)] frames: Bitmap<'a>, cpus: u32 }");
        for method in [
            "fn allocate_frame (& self)",
            "fn allocate_frames (& self",
            "fn allocate_frames_near (& self",
            "unsafe fn deallocate_frame (& self",
            "unsafe fn deallocate_frames (& self",
            "FrameAllocator < __FrameallocPageSize > for & K < 'a >",
            "FrameDeallocator < __FrameallocPageSize > for & K < 'a >",
            "SharedFieldProbe :: < Bitmap < '_ > >",
        ] {
            assert!(out.contains(method), "{method}: {out}");
        }
        assert_eq!(out.matches("automatically_derived").count(), 4, "{out}");
        // The field is used as it is, through `&self`.
        assert!(out.contains("(& self . frames ,"), "{out}");
        assert!(!out.contains("& mut self . frames"), "{out}");
        // After an error: the shared impls, unbounded, bodies that never run.
        let bad = derive("struct K { #[frame_allocator(shared)] frames: u64 }");
        assert!(bad.contains("compile_error"), "{bad}");
        assert!(
            bad.contains("SharedFrameAllocator < __FrameallocPageSize > for K"),
            "{bad}"
        );
        assert!(!bad.contains("u64 : "), "{bad}");
    }

    #[test]
    fn tagged_implements_frame_allocator_only_with_a_default() {
        let without = derive("#[frame_allocator(unsafe tagged(method = m, tag = T))] struct A;");
        assert!(
            without.contains("TaggedFrameAllocator < :: framealloc :: __private :: Size4KiB >")
        );
        assert!(
            !without.contains("__private :: FrameAllocator <"),
            "{without}"
        );
        let with = derive(
            "#[frame_allocator(crate = ::k, unsafe tagged(method = m, tag = T, default = T::A, \
             sizes(Size2MiB, Size1GiB)))] struct A;",
        );
        assert_eq!(with.matches("unsafe impl").count(), 4, "{with}");
        assert!(with.contains(":: k :: __private :: Size1GiB"), "{with}");
        assert!(!with.contains("Size4KiB"), "{with}");
    }
}
