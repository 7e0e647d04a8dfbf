//! The allowlist file: one IMEI per line; `#` starts a comment (a whole
//! line, or the rest of one); blank lines are ignored. Every bad line is
//! named by its number (1-based), so that one look at the error finds them.

use std::collections::HashSet;
use std::fmt;

use crate::protocol::Imei;

/// At most this many bad lines are listed in one error (the rest are counted).
const LISTED: usize = 10;

/// One line that is not an IMEI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine {
    /// 1-based.
    pub line: usize,
    /// The line as written, without its comment, trimmed.
    pub text: String,
    pub reason: String,
}

/// Every bad line of a file: the first few in full, the count of the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLines {
    pub lines: Vec<BadLine>,
    /// Bad lines after the ones listed.
    pub more: usize,
}

impl fmt::Display for BadLines {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.lines.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(
                f,
                "line {}: `{}` is not an IMEI ({})",
                b.line, b.text, b.reason
            )?;
        }
        if self.more > 0 {
            write!(f, "; and {} more bad lines", self.more)?;
        }
        Ok(())
    }
}

/// What a line says without its comment, trimmed.
fn content(line: &str) -> &str {
    line.split('#').next().unwrap_or("").trim()
}

/// The IMEIs of an allowlist file, as `u64`s ([`Imei::as_u64`]); a
/// file with any bad line is refused whole, with every bad line named.
/// An IMEI listed twice is fine.
pub fn parse(text: &str) -> Result<HashSet<u64>, BadLines> {
    let mut imeis = HashSet::new();
    let mut bad = BadLines {
        lines: Vec::new(),
        more: 0,
    };
    for (i, line) in text.lines().enumerate() {
        let c = content(line);
        if c.is_empty() {
            continue;
        }
        match c.parse::<Imei>() {
            Ok(imei) => {
                imeis.insert(imei.as_u64());
            }
            Err(e) if bad.lines.len() < LISTED => bad.lines.push(BadLine {
                line: i + 1,
                text: c.chars().take(40).collect(),
                reason: e.to_string(),
            }),
            Err(_) => bad.more += 1,
        }
    }
    if bad.lines.is_empty() {
        Ok(imeis)
    } else {
        Err(bad)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imeis_comments_and_blank_lines() {
        let text = "# badges of site A\n\
                    353419032981446\n\
                    \n\
                    \t 861200000000016   # Alice\n\
                    # 111111111111111 commented out\n\
                    3534190329814460\n\
                    353419032981446\n\
                    \r\n\
                    861200000000024\r\n";
        let set = parse(text).unwrap();
        let mut got: Vec<u64> = set.into_iter().collect();
        got.sort();
        assert_eq!(
            got,
            [
                353_419_032_981_446,
                861_200_000_000_016,
                861_200_000_000_024,
                3_534_190_329_814_460
            ]
        );
        assert!(parse("").unwrap().is_empty());
        assert!(parse("# nothing\n\n   \n").unwrap().is_empty());
    }

    #[test]
    fn bad_lines_are_named_by_number() {
        let text = "353419032981446\n12345\n\nabc353419032981\n353419032981446 861200000000016\n";
        let e = parse(text).unwrap_err();
        let lines: Vec<usize> = e.lines.iter().map(|b| b.line).collect();
        assert_eq!(lines, [2, 4, 5]);
        assert_eq!(e.more, 0);
        assert_eq!(e.lines[0].text, "12345");
        assert_eq!(
            e.to_string(),
            "line 2: `12345` is not an IMEI (an IMEI has 15 or 16 digits); \
             line 4: `abc353419032981` is not an IMEI (an IMEI has only decimal digits); \
             line 5: `353419032981446 861200000000016` is not an IMEI (an IMEI has 15 or 16 digits)"
        );
    }

    #[test]
    fn many_bad_lines_are_listed_then_counted() {
        let text: String = (0..25).map(|i| format!("bad{i}\n")).collect();
        let e = parse(&text).unwrap_err();
        assert_eq!(e.lines.len(), LISTED);
        assert_eq!(e.lines[9].line, 10);
        assert_eq!(e.more, 15);
        assert!(e.to_string().ends_with("; and 15 more bad lines"), "{e}");
    }
}
