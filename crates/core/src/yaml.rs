//! YAML with a guard: the config and the manifest are parsed here.

/// Deepest `[`/`{` nesting [`parse_yaml`] accepts. libyaml's scanner walks its stack of
/// open flow collections on every token, so a deep one costs quadratic time (100k `[` took
/// most of a minute before failing); no config or manifest comes near this.
const MAX_YAML_NESTING: usize = 64;

/// Parse YAML after checking its flow nesting (outside quotes and comments) against
/// [`MAX_YAML_NESTING`]; the error reads "not valid YAML: ...".
pub(crate) fn parse_yaml<T: serde::de::DeserializeOwned>(text: &str) -> std::result::Result<T, String> {
    // A quoted scalar spanning lines is read per line; that can only over-count brackets.
    let mut depth = 0usize;
    for (n, line) in text.lines().enumerate() {
        let (mut quote, mut prev) = (None, ' ');
        for c in line.chars() {
            match quote {
                Some(q) if c == q => quote = None,
                Some(_) => {}
                None => match c {
                    '#' if prev.is_whitespace() => break,
                    '"' | '\'' if !prev.is_alphanumeric() => quote = Some(c),
                    '[' | '{' => {
                        depth += 1;
                        if depth > MAX_YAML_NESTING {
                            return Err(format!(
                                "not valid YAML: brackets nested deeper than {MAX_YAML_NESTING} levels at line {}",
                                n + 1
                            ));
                        }
                    }
                    ']' | '}' => depth = depth.saturating_sub(1),
                    _ => {}
                },
            }
            prev = c;
        }
    }
    serde_yaml::from_str(text).map_err(|e| format!("not valid YAML: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_yaml::Value;

    #[test]
    fn deep_yaml_nesting_is_refused_before_the_parser_sees_it() {
        let deep = format!("a: {}", "[".repeat(100_000));
        // Refused by the scan, before the parser's quadratic walk (tens of seconds).
        let e = parse_yaml::<Value>(&deep).unwrap_err();
        assert!(e.contains("deeper than 64 levels at line 1"), "{e}");
        // Brackets in quotes and comments do not count; 64 levels still parse.
        let ok = format!(
            "a: \"{}\" # {}\nb: {}1{}",
            "[".repeat(100),
            "{".repeat(100),
            "[".repeat(64),
            "]".repeat(64)
        );
        assert!(parse_yaml::<Value>(&ok).is_ok());
    }
}
