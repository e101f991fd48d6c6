//! The pass cases of `ui-tests`, compiled and run as edition 2021, and the
//! compile-fail cases whose outcome depends on the edition.

#[test]
fn pass_edition_2021() {
    let t = trybuild::TestCases::new();
    t.pass("../tests/pass/*.rs");
    t.compile_fail("tests/fail/*.rs");
}
