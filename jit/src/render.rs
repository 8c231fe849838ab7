//! Closed-world template rendering.
//!
//! Templates contain `{{NAME}}` placeholders (`NAME` is `[A-Z0-9_]+`). Rendering is strict:
//! every placeholder must get a value, every value must name a placeholder, and no placeholder
//! syntax may survive. This keeps Rust and WGSL from drifting apart silently.

use crate::error::JitError;

/// Render `template` (named `name` for errors) with `values`.
pub fn render(name: &str, template: &str, values: &[(&str, String)]) -> Result<String, JitError> {
    let declared = placeholders(name, template)?;
    for (k, _) in values {
        if !declared.iter().any(|d| d == k) {
            return Err(JitError::UnknownPlaceholder {
                template: name.into(),
                name: (*k).into(),
            });
        }
    }
    for d in &declared {
        if !values.iter().any(|(k, _)| k == d) {
            return Err(JitError::MissingPlaceholder {
                template: name.into(),
                name: d.clone(),
            });
        }
    }
    let mut out = String::with_capacity(template.len() + 256);
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        // `placeholders` already proved the closing braces exist.
        let end = after.find("}}").unwrap_or(after.len());
        let key = &after[..end];
        if let Some((_, v)) = values.iter().find(|(k, _)| *k == key) {
            out.push_str(v);
        }
        rest = after.get(end + 2..).unwrap_or("");
    }
    out.push_str(rest);
    if let Some(pos) = out.find("{{").or_else(|| out.find("}}")) {
        let lo = pos.saturating_sub(20);
        let hi = (pos + 20).min(out.len());
        let context = out.get(lo..hi).unwrap_or("").to_string();
        return Err(JitError::LeftoverPlaceholder {
            template: name.into(),
            context,
        });
    }
    Ok(out)
}

/// The distinct placeholder names a template declares, in first-use order.
pub fn placeholders(name: &str, template: &str) -> Result<Vec<String>, JitError> {
    let mut names: Vec<String> = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            let text: String = after.chars().take(24).collect();
            return Err(JitError::MalformedPlaceholder {
                template: name.into(),
                text,
            });
        };
        let key = &after[..end];
        let ok = !key.is_empty()
            && key
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
        if !ok {
            return Err(JitError::MalformedPlaceholder {
                template: name.into(),
                text: key.into(),
            });
        }
        if !names.iter().any(|n| n == key) {
            names.push(key.to_string());
        }
        rest = &after[end + 2..];
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_every_placeholder() {
        let s = render(
            "t",
            "a {{X}} b {{Y}} {{X}}",
            &[("X", "1".into()), ("Y", "2".into())],
        )
        .unwrap();
        assert_eq!(s, "a 1 b 2 1");
    }

    #[test]
    fn missing_unknown_leftover_and_malformed_are_errors() {
        assert!(matches!(
            render("t", "{{X}}", &[]),
            Err(JitError::MissingPlaceholder { name, .. }) if name == "X"
        ));
        assert!(matches!(
            render("t", "{{X}}", &[("X", "1".into()), ("Z", "2".into())]),
            Err(JitError::UnknownPlaceholder { name, .. }) if name == "Z"
        ));
        assert!(matches!(
            render("t", "{{X}}", &[("X", "{{Y}}".into())]),
            Err(JitError::LeftoverPlaceholder { .. })
        ));
        assert!(matches!(
            render("t", "{{x}}", &[]),
            Err(JitError::MalformedPlaceholder { .. })
        ));
        assert!(matches!(
            render("t", "{{X", &[]),
            Err(JitError::MalformedPlaceholder { .. })
        ));
    }
}

/// One named section of a template file. Files hold several sections, each introduced by a
/// line `//! section NAME`; this keeps one op family's snippets in one .wgsl file.
pub fn section<'a>(file_name: &str, file: &'a str, name: &str) -> Result<&'a str, JitError> {
    let marker = format!("//! section {name}\n");
    let start = file
        .find(&marker)
        .ok_or_else(|| JitError::MissingPlaceholder {
            template: file_name.into(),
            name: format!("section {name}"),
        })?
        + marker.len();
    let rest = &file[start..];
    let end = rest.find("//! section ").unwrap_or(rest.len());
    Ok(&rest[..end])
}

#[cfg(test)]
mod section_tests {
    use super::*;

    #[test]
    fn sections_split_on_markers() {
        let f = "//! section a\nAAA\n//! section b\nBBB\n";
        assert_eq!(section("f", f, "a").unwrap(), "AAA\n");
        assert_eq!(section("f", f, "b").unwrap(), "BBB\n");
        assert!(section("f", f, "c").is_err());
    }
}
