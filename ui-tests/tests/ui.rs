//! trybuild suites: every form of the macros that must compile, and every
//! misuse that must not, with its reviewed error message.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/pass/*.rs");
    t.compile_fail("tests/fail/*.rs");
}
