//! Highlights: the words of a shown field that the query matched — as
//! typed, as a typo or as a completion — wrapped in `<em>…</em>`. The
//! query's variants were expanded into real index terms (`query::expand`),
//! so the shown text is re-analysed and every token equal to one of them is
//! marked; this is how fuzzy matches get highlights, which tantivy's
//! snippet generator (exact terms only) would miss. The text around them is
//! HTML-escaped, so a highlight can be shown as HTML safely.

use std::collections::BTreeSet;

use tantivy::tokenizer::TokenStream;

use crate::schema;

/// Longest fragment shown (characters): a long field is cut around its
/// first match.
pub const FRAGMENT_CHARS: usize = 160;

fn escape(text: &str, out: &mut String) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

/// `text` with the tokens in `terms` wrapped in `<em>`; `None` when none is.
pub fn highlight(text: &str, terms: &BTreeSet<String>) -> Option<String> {
    let mut analyzer = schema::analyzer();
    let mut stream = analyzer.token_stream(text);
    let mut spans = Vec::new();
    while stream.advance() {
        let token = stream.token();
        if terms.contains(&token.text) {
            spans.push((token.offset_from, token.offset_to));
        }
    }
    let (first, _) = *spans.first()?;
    // A window of the text around the first match.
    let (mut start, mut end) = (0, text.len());
    if text.chars().count() > FRAGMENT_CHARS {
        start = text[..first].char_indices().rev().nth(FRAGMENT_CHARS / 4).map_or(0, |(i, _)| i);
        end = text[start..].char_indices().nth(FRAGMENT_CHARS).map_or(text.len(), |(i, _)| start + i);
    }
    let mut out = String::new();
    if start > 0 {
        out.push('…');
    }
    let mut at = start;
    for (from, to) in spans.into_iter().filter(|(f, t)| *f >= start && *t <= end) {
        escape(&text[at..from], &mut out);
        out.push_str("<em>");
        escape(&text[from..to], &mut out);
        out.push_str("</em>");
        at = to;
    }
    escape(&text[at..end], &mut out);
    if end < text.len() {
        out.push('…');
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_every_matched_token_and_escapes_the_rest() {
        let terms: BTreeSet<String> = ["revenue".to_string(), "zoe".into()].into();
        assert_eq!(highlight("Zoë's <b>Revenue</b>", &terms).as_deref(), Some("<em>Zoë</em>&#39;s &lt;b&gt;<em>Revenue</em>&lt;/b&gt;"));
        assert_eq!(highlight("nothing here", &terms), None);
        let long = format!("{} revenue {}", "word ".repeat(100), "tail ".repeat(100));
        let h = highlight(&long, &terms).unwrap();
        assert!(h.starts_with('…') && h.ends_with('…') && h.contains("<em>revenue</em>"), "{h}");
    }
}
