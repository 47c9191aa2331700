//! What commands print on stdout: JSON for scripts (`--json`) or aligned text for people.
//! Logs and errors go to stderr, so stdout stays parseable.

use std::io::Write;

use serde::Serialize;

/// Writes `text` and a newline to stdout. A closed pipe surfaces as an `io::Error` of kind
/// `BrokenPipe`, which `main` treats as a normal end (`roster app list | head -1`).
pub fn line(text: impl AsRef<str>) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_ref().as_bytes())?;
    out.write_all(b"\n")?;
    out.flush()?;
    Ok(())
}

/// Prints one compact JSON value on one line.
pub fn json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    line(serde_json::to_string(value)?)
}

/// Label/value rows aligned in two columns, each row indented by two spaces.
pub fn fields(rows: &[(&str, String)]) -> String {
    let width = rows.iter().map(|(label, _)| label.len()).max().unwrap_or(0);
    rows.iter()
        .map(|(label, value)| format!("  {label:<width$}  {value}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Rows as a table with a header line, columns padded to their widest cell.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let render = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i == last {
                    c.to_string()
                } else {
                    format!("{c:<w$}", w = widths[i])
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
    };
    std::iter::once(render(header.to_vec()))
        .chain(rows.iter().map(|r| render(r.iter().map(String::as_str).collect())))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `yes` / `no`.
pub fn yes_no(v: bool) -> String {
    if v { "yes" } else { "no" }.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_pad_every_column_but_the_last() {
        let t = table(&["KID", "CREATED"], &[vec!["k-1".into(), "2025".into()]]);
        assert_eq!(t, "KID  CREATED\nk-1  2025");
    }

    #[test]
    fn fields_align_values() {
        assert_eq!(
            fields(&[("id", "1".into()), ("name", "x".into())]),
            "  id    1\n  name  x"
        );
    }
}
