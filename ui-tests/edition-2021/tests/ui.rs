//! The pass cases of `ui-tests`, compiled and run as edition 2021.

#[test]
fn pass_edition_2021() {
    let t = trybuild::TestCases::new();
    t.pass("../tests/pass/*.rs");
}
