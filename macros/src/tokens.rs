//! Reading and building tokens, shared by both macros.
//!
//! syn's `full` feature is off (the macro crate builds faster for it), so
//! expressions and closures are not parsed: where an argument ends is found
//! from the tokens ([`end_of_argument`]), and the tokens pass through.

use proc_macro2::{Delimiter, Group, Span, TokenStream, TokenTree};

/// A group of `tokens` whose delimiters carry `span`.
pub(crate) fn group(delimiter: Delimiter, tokens: TokenStream, span: Span) -> Group {
    let mut group = Group::new(delimiter, tokens);
    group.set_span(span);
    group
}

/// `group` with other contents.
pub(crate) fn regroup(old: &Group, tokens: TokenStream) -> TokenTree {
    TokenTree::Group(group(old.delimiter(), tokens, old.span()))
}

pub(crate) fn is_punct(token: Option<&TokenTree>, ch: char) -> bool {
    matches!(token, Some(TokenTree::Punct(p)) if p.as_char() == ch)
}

pub(crate) fn is_joint_punct(token: Option<&TokenTree>, ch: char) -> bool {
    matches!(token, Some(TokenTree::Punct(p))
        if p.as_char() == ch && p.spacing() == proc_macro2::Spacing::Joint)
}

pub(crate) fn is_ident(token: Option<&TokenTree>, name: &str) -> bool {
    matches!(token, Some(TokenTree::Ident(ident)) if ident == name)
}

/// Keywords after which an expression (an operand) begins, so that a `<`
/// there opens a qualified path (`as <T as Trait>::X`, `return <T>::new()`).
const OPERAND_KEYWORDS: [&str; 11] = [
    "as", "if", "match", "return", "in", "while", "break", "yield", "mut", "else", "move",
];

/// Whether a `<` at `i` opens angle brackets rather than comparing, in an
/// expression that starts at `start`.
///
/// It opens a generic argument list after `::` (a turbofish), and a
/// qualified path where an operand begins: at the start, after an operator
/// or an opening keyword. After an operand (a name, a literal, a group, `?`)
/// it is the less-than operator.
fn opens_angle(tokens: &[TokenTree], start: usize, i: usize) -> bool {
    if i == start {
        return true;
    }
    match &tokens[i - 1] {
        TokenTree::Punct(p) if p.as_char() == ':' => {
            i >= start + 2 && is_joint_punct(tokens.get(i - 2), ':')
        }
        TokenTree::Punct(p) => p.as_char() != '?',
        TokenTree::Ident(ident) => OPERAND_KEYWORDS.iter().any(|k| ident == k),
        TokenTree::Group(_) | TokenTree::Literal(_) => false,
    }
}

/// The index of the next comma that ends an argument, starting at `i`.
///
/// Commas inside angle brackets do not end it. In types (`all_angles`) every
/// `<` opens angle brackets; in expressions, those that [`opens_angle`]
/// says do (a turbofish, a qualified path), and inside them the tokens are a
/// type, where again every `<` opens.
pub(crate) fn end_of_argument(tokens: &[TokenTree], mut i: usize, all_angles: bool) -> usize {
    let start = i;
    let mut depth = 0usize;
    while let Some(token) = tokens.get(i) {
        if let TokenTree::Punct(p) = token {
            match p.as_char() {
                ',' if depth == 0 => break,
                '<' if depth > 0 || all_angles || opens_angle(tokens, start, i) => {
                    depth += 1;
                }
                '>' if depth > 0
                    && !(i > start
                        && (is_joint_punct(tokens.get(i - 1), '-')
                            || is_joint_punct(tokens.get(i - 1), '='))) =>
                {
                    depth -= 1;
                }
                _ => {}
            }
        }
        i += 1;
    }
    i
}
