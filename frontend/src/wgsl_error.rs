//! Locating the relay's `invalid_wgsl` message (`<line>:<column>: reason`) in the editor's source.

/// Where in the source a WGSL error points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WgslLocation {
    /// 1-based.
    pub line: u32,
    /// 1-based, in bytes (as naga counts).
    pub column: u32,
    pub message: String,
}

/// Reads `12:5: expected ';'`. `None` when the message does not start with a location.
pub fn parse(message: &str) -> Option<WgslLocation> {
    let mut parts = message.splitn(3, ':');
    let line = parts.next()?.trim().parse::<u32>().ok().filter(|&l| l >= 1)?;
    let column = parts.next()?.trim().parse::<u32>().ok().filter(|&c| c >= 1)?;
    let message = parts.next().unwrap_or("").trim().to_string();
    Some(WgslLocation { line, column, message })
}

/// The offending line and a caret under the column, for a `<pre>` under the editor. `None` when
/// the line is past the end of the source (the source changed since it was sent).
pub fn excerpt(source: &str, at: &WgslLocation) -> Option<(String, String)> {
    let text = source.lines().nth(at.line as usize - 1)?;
    // The column counts bytes; the caret is drawn in characters.
    let byte = (at.column as usize - 1).min(text.len());
    let byte = (0..=byte).rev().find(|&b| text.is_char_boundary(b)).unwrap_or(0);
    let chars_before = text[..byte].chars().map(|c| if c == '\t' { '\t' } else { ' ' }).collect::<String>();
    Some((text.to_string(), format!("{chars_before}^")))
}

/// Byte offsets of the start and end of `line` (1-based) in `source`, to select it in the editor.
/// JS selection offsets count UTF-16 units, so these are converted for the textarea.
pub fn line_range_utf16(source: &str, line: u32) -> Option<(u32, u32)> {
    let mut start_units = 0u32;
    for (i, text) in source.split('\n').enumerate() {
        let units = text.encode_utf16().count() as u32;
        if i + 1 == line as usize {
            return Some((start_units, start_units + units));
        }
        start_units += units + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_line_column_messages() {
        assert_eq!(
            parse("3:14: expected ';', found '}'"),
            Some(WgslLocation { line: 3, column: 14, message: "expected ';', found '}'".into() })
        );
        assert_eq!(parse("no location here"), None);
        assert_eq!(parse("0:1: zero line"), None);
        assert_eq!(parse("7:2"), Some(WgslLocation { line: 7, column: 2, message: String::new() }));
    }

    #[test]
    fn excerpt_points_a_caret_at_the_column() {
        let source = "fn a() {}\n\tlet x = 1\n";
        let at = parse("2:6: x").unwrap();
        let (text, caret) = excerpt(source, &at).unwrap();
        assert_eq!(text, "\tlet x = 1");
        // The tab stays a tab so the caret lines up under a proportional rendering of tabs too.
        assert_eq!(caret, "\t    ^");
        assert_eq!(excerpt(source, &parse("9:1: x").unwrap()), None);
        // A column past the end of the line points just after it.
        let (_, caret) = excerpt("ab", &parse("1:40: x").unwrap()).unwrap();
        assert_eq!(caret, "  ^");
    }

    #[test]
    fn line_ranges_count_utf16_units() {
        let source = "abc\n€é😀\nlast";
        assert_eq!(line_range_utf16(source, 1), Some((0, 3)));
        // '€' and 'é' are one unit each, '😀' two.
        assert_eq!(line_range_utf16(source, 2), Some((4, 8)));
        assert_eq!(line_range_utf16(source, 3), Some((9, 13)));
        assert_eq!(line_range_utf16(source, 4), None);
    }
}
