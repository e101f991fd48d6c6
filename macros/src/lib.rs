//! Procedural macros for [`framealloc`](https://docs.rs/framealloc).
//!
//! Do not depend on this crate directly: `framealloc` re-exports both macros,
//! and the generated code refers to `framealloc` paths.
//!
//! The derive is built in phases, one module each: `ast` reads the input
//! into a model, `attr` parses the attributes, `valid` decides what to
//! generate (collecting every error in a `ctxt::Errors`), `expand` writes
//! the impls. `closure` is `frame_allocator!`.

mod ast;
mod attr;
mod closure;
mod ctxt;
mod expand;
mod generics;
mod reach;
mod sizes;
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
/// | type | `#[frame_allocator(crate = path)]` | `framealloc` is at `path` (for crates that re-export it) |
/// | type | `#[frame_allocator(unsafe tagged(…))]` | implement from a tagged method (fields are then not used) |
/// | in `tagged` | `method = name` (required) | `Self::name`, or a path to any function of that shape |
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
/// locals cannot capture the user's names: the page-size parameter is named
/// so that it occurs nowhere in the input, and locals are mixed-site
/// `__framealloc_…` names.
///
/// # `unsafe_code`
///
/// `FrameAllocator` is an unsafe trait, so the derived impls are
/// `unsafe impl`s, but only `unsafe tagged(…)` makes a promise of the user's
/// own. Its impls carry the span of the `tagged` written after that
/// `unsafe`, so rustc's `unsafe_code` lint reports them there: a crate under
/// `#![forbid(unsafe_code)]` cannot use `unsafe tagged(…)`, and under
/// `#![deny(unsafe_code)]` it takes `#[allow(unsafe_code)]` on the type
/// (the derive copies that allowance onto its impls). Field forwarding and
/// enum dispatch promise nothing the field's own impl does not; their impls
/// are macro-generated from end to end, which rustc does not lint, so
/// crates that forbid unsafe code can derive them.
///
/// # Errors
///
/// Misuse is reported with spanned, specific messages, all errors of one
/// input at once: unions, a multi-field struct or variant with no marked
/// field, two marked fields, fieldless structs or variants, a marker on a
/// variant or with arguments, unknown or duplicate keys, `tagged` without
/// `unsafe` or without `method`/`tag`, unknown page sizes. A method with the
/// wrong signature is reported at `method = …` with the expected signature.
/// After an error the derive still emits a stand-in `FrameAllocator` impl, so
/// code using the type reports nothing further.
///
/// [`TaggedFrameAllocator`]: https://docs.rs/framealloc/latest/framealloc/tagged/trait.TaggedFrameAllocator.html
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
/// - `crate = path` names `framealloc` for crates that re-export it.
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
/// A closure that is not a literal (a variable holding one) is rejected with
/// a pointer to `framealloc::from_fn(f)`, as are closures with arguments for
/// allocation, `async` closures, a third closure and unknown entries. A
/// closure returning anything but `Option<PhysFrame<S>>` is reported at its
/// body.
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
