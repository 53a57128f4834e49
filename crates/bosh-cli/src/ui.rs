//! Output in the official CLI's shapes: text tables, blocks and lines, or with `--json` one
//! document `{"Tables": [...], "Blocks": [...], "Lines": [...]}` printed at the end.
//! Errors end with a blank line and `Exit code 1`, as the reference CLI prints them.
//!
//! Table rendering follows the reference CLI's `ui/table` package: rows sorted by the
//! requested columns, repeated first-column values shown as `~`, empty cells as `-`, every
//! column (the last one too) followed by a two-space border, multi-line cells spread over
//! several lines, then notes and a `"<n> <content>"` count line. A table printed after other
//! output is preceded by a blank line, as the reference CLI's padding UI does.

use serde::Serialize;
use std::io::Write;
use std::process::ExitCode;

/// A table as the official CLI renders it: header, rows, notes, and a count line
/// `"<rows> <content>"` (e.g. `3 jobs`). Cells may hold several lines joined by `\n` (the
/// reference CLI's list values); an empty cell prints as `-`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Table {
    /// Plural noun of what the rows are ("jobs", "packages"); used for the count line.
    pub content: String,
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
    pub notes: Vec<String>,
}

/// Presentation options of a table (the reference CLI's `SortBy`, `Transpose`,
/// `FillFirstColumn`).
#[derive(Debug, Clone, Default)]
pub struct TableOptions {
    /// Columns to sort rows by, with `true` for ascending.
    pub sort_by: Vec<(usize, bool)>,
    /// Print each row as `header value` lines (used for one-record summaries).
    pub transpose: bool,
    /// Print repeated first-column values instead of `~`.
    pub fill_first_column: bool,
}

#[derive(Debug, Default, Serialize)]
struct JsonTable {
    #[serde(rename = "Content")]
    content: String,
    // BTreeMap: Go marshals map keys sorted.
    #[serde(rename = "Header")]
    header: std::collections::BTreeMap<String, String>,
    #[serde(rename = "Rows")]
    rows: Vec<std::collections::BTreeMap<String, String>>,
    #[serde(rename = "Notes")]
    notes: Option<Vec<String>>,
}

/// Go leaves never-appended slices nil, which marshal as `null`.
#[derive(Debug, Default, Serialize)]
struct JsonOutput {
    #[serde(rename = "Tables")]
    tables: Option<Vec<JsonTable>>,
    #[serde(rename = "Blocks")]
    blocks: Option<Vec<String>>,
    #[serde(rename = "Lines")]
    lines: Option<Vec<String>>,
}

/// What was printed last, for the blank-line padding between outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Printed {
    Nothing,
    Text,
    Table,
}

pub struct Ui {
    json: bool,
    out: JsonOutput,
    /// Commands like `interpolate` print no trailing "Succeeded".
    quiet_success: bool,
    printed: Printed,
}

impl Ui {
    pub fn new(json: bool) -> Self {
        Ui {
            json,
            out: JsonOutput::default(),
            quiet_success: false,
            printed: Printed::Nothing,
        }
    }

    #[allow(dead_code)] // API for command modules
    pub fn is_json(&self) -> bool {
        self.json
    }

    /// Suppresses the closing `Succeeded` line (the reference CLI omits it for some commands).
    pub fn skip_succeeded(&mut self) {
        self.quiet_success = true;
    }

    /// A line of text (in JSON mode: an entry of `Lines`).
    pub fn line(&mut self, text: impl Into<String>) {
        let text = text.into();
        if self.json {
            self.out.lines.get_or_insert_with(Vec::new).push(text);
        } else {
            self.pad_after_table();
            stdout_write(&format!("{text}\n"));
            self.printed = Printed::Text;
        }
    }

    /// Raw text printed as is (in JSON mode: an entry of `Blocks`).
    pub fn block(&mut self, text: impl Into<String>) {
        let text = text.into();
        if self.json {
            self.out.blocks.get_or_insert_with(Vec::new).push(text);
        } else {
            self.pad_after_table();
            stdout_write(&text);
            self.printed = Printed::Text;
        }
    }

    /// Prints a table with default options (no sorting, not transposed).
    #[allow(dead_code)] // API for command modules
    pub fn table(&mut self, table: &Table) {
        self.table_with(table, &TableOptions::default());
    }

    /// Prints a table with presentation options.
    pub fn table_with(&mut self, table: &Table, opts: &TableOptions) {
        if self.json {
            self.out
                .tables
                .get_or_insert_with(Vec::new)
                .push(json_table(table, opts));
            return;
        }
        if self.printed != Printed::Nothing {
            stdout_write("\n");
        }
        stdout_write(&render_table_with(table, opts));
        self.printed = Printed::Table;
    }

    fn pad_after_table(&mut self) {
        if self.printed == Printed::Table {
            stdout_write("\n");
        }
    }

    /// Ends the command: prints `Succeeded` or the error and `Exit code 1`, and the JSON
    /// document in JSON mode.
    pub fn finish(mut self, result: anyhow::Result<()>) -> ExitCode {
        let code = match &result {
            Ok(()) => 0u8,
            Err(_) => 1u8,
        };
        if self.json {
            let lines = self.out.lines.get_or_insert_with(Vec::new);
            if let Err(e) = &result {
                lines.push(error_text(e));
                lines.push(format!("Exit code {code}"));
            } else if !self.quiet_success {
                lines.push("Succeeded".into());
            }
            // Like Go's json.MarshalIndent: no trailing newline.
            stdout_write(&json_document(&self.out));
            return ExitCode::from(code);
        }
        match result {
            Ok(()) => {
                if !self.quiet_success {
                    stdout_write("\nSucceeded\n");
                }
            }
            Err(e) => {
                let _ = std::io::stdout().flush();
                eprintln!("{}\n\nExit code {code}", error_text(&e));
            }
        }
        ExitCode::from(code)
    }
}

/// Writes and flushes stdout. A reader that went away (`bosh-rs ... | head`) ends the
/// command quietly with status 0 instead of a panic: there is nobody left to tell.
pub fn stdout_write(text: &str) {
    let mut out = std::io::stdout().lock();
    let written = out.write_all(text.as_bytes()).and_then(|()| out.flush());
    if let Err(e) = written
        && e.kind() == std::io::ErrorKind::BrokenPipe
    {
        std::process::exit(0);
    }
}

/// The error's own message. Library errors already carry their context in Display, so the
/// chain is not repeated.
fn error_text(e: &anyhow::Error) -> String {
    // Library errors keep their causes in `source()` and leave them out of Display; the
    // reference CLI prints wrapped errors on one line as `outer: inner: ...`.
    e.chain()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(": ")
}

/// The JSON document as Go's `json.MarshalIndent(v, "", "    ")` writes it, including its
/// HTML-safe escaping of `<`, `>` and `&`.
fn json_document(out: &JsonOutput) -> String {
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    if out.serialize(&mut ser).is_err() {
        return String::new();
    }
    // These characters only occur inside JSON strings, where Go escapes them.
    String::from_utf8_lossy(&buf)
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029")
}

fn json_table(t: &Table, opts: &TableOptions) -> JsonTable {
    let keys: Vec<String> = t
        .header
        .iter()
        .enumerate()
        .map(|(i, h)| match header_key(h) {
            k if k == "_" => i.to_string(),
            k => k,
        })
        .collect();
    let keys: Vec<String> = if keys.is_empty() {
        // Headerless tables get `col_<i>` keys with empty titles.
        let width = t.rows.first().map(Vec::len).unwrap_or(0);
        (0..width).map(|i| format!("col_{i}")).collect()
    } else {
        keys
    };
    let titles: Vec<String> = if t.header.is_empty() {
        vec![String::new(); keys.len()]
    } else {
        t.header.clone()
    };
    // JSON output always fills the first column.
    let rows = sorted_rows(t, &opts.sort_by, true);
    JsonTable {
        content: t.content.clone(),
        header: keys.iter().cloned().zip(titles).collect(),
        rows: rows
            .iter()
            .map(|r| keys.iter().cloned().zip(r.iter().cloned()).collect())
            .collect(),
        notes: if t.notes.is_empty() {
            None
        } else {
            Some(t.notes.clone())
        },
    }
}

/// The official CLI's JSON key for a column header: letters and digits lower-cased, runs of
/// anything else collapsed to one `_` (leading and trailing ones dropped); `_` when nothing
/// is left.
pub fn header_key(h: &str) -> String {
    let cleaned: String = h
        .chars()
        .map(|c| {
            if c.is_alphanumeric() {
                c.to_lowercase().next().unwrap_or(c)
            } else {
                ' '
            }
        })
        .collect();
    let key = cleaned
        .split(' ')
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("_");
    if key.is_empty() { "_".to_string() } else { key }
}

/// Rows after sorting and, unless `fill_first_column`, with repeats of the previous
/// distinct first-column value replaced by `~`.
fn sorted_rows(t: &Table, sort_by: &[(usize, bool)], fill_first_column: bool) -> Vec<Vec<String>> {
    let mut rows = t.rows.clone();
    if !sort_by.is_empty() {
        rows = merge_sort(rows, &|a, b| row_less(a, b, sort_by));
    }
    if !fill_first_column {
        let mut last: Option<String> = None;
        for row in rows.iter_mut() {
            let Some(first) = row.first_mut() else {
                continue;
            };
            match &last {
                Some(prev) if prev == first => *first = "~".to_string(),
                _ => last = Some(first.clone()),
            }
        }
    }
    rows
}

/// The reference CLI's row order: each sort column votes for one side with a weight that
/// falls with its position, and the side with the larger total sorts first.
fn row_less(a: &[String], b: &[String], sort_by: &[(usize, bool)]) -> bool {
    let (mut left, mut right) = (0i64, 0i64);
    for (ci, &(col, asc)) in sort_by.iter().enumerate() {
        let weight = (10 - ci as i64) * 10;
        let x = a.get(col).map(String::as_bytes).unwrap_or_default();
        let y = b.get(col).map(String::as_bytes).unwrap_or_default();
        match x.cmp(y) {
            std::cmp::Ordering::Equal => {
                left += weight;
                right += weight;
            }
            std::cmp::Ordering::Less if asc => left += weight,
            std::cmp::Ordering::Greater if !asc => left += weight,
            _ => right += weight,
        }
    }
    left > right
}

/// A stable merge sort that tolerates comparators which are not total orders (the
/// reference ordering above is not one when several columns disagree).
fn merge_sort<T: Clone>(items: Vec<T>, less: &dyn Fn(&T, &T) -> bool) -> Vec<T> {
    if items.len() <= 1 {
        return items;
    }
    let mut items = items;
    let right = items.split_off(items.len() / 2);
    let left = merge_sort(items, less);
    let right = merge_sort(right, less);
    let mut out = Vec::with_capacity(left.len() + right.len());
    let (mut i, mut j) = (0, 0);
    while i < left.len() && j < right.len() {
        if less(&right[j], &left[i]) {
            out.push(right[j].clone());
            j += 1;
        } else {
            out.push(left[i].clone());
            i += 1;
        }
    }
    out.extend_from_slice(&left[i..]);
    out.extend_from_slice(&right[j..]);
    out
}

/// One cell of the text writer; `spacer` marks the blank separators of transposed tables.
#[derive(Clone)]
enum Cell {
    Text(String),
    Spacer,
}

/// Text rendering with default options.
#[allow(dead_code)] // API for command modules
pub fn render_table(t: &Table) -> String {
    render_table_with(t, &TableOptions::default())
}

/// Text rendering as the reference CLI's table writer does it.
pub fn render_table_with(t: &Table, opts: &TableOptions) -> String {
    let rows = sorted_rows(t, &opts.sort_by, opts.fill_first_column);
    let mut lines: Vec<Vec<Cell>> = Vec::new();
    if opts.transpose {
        for (i, row) in rows.iter().enumerate() {
            for (j, val) in row.iter().enumerate() {
                let title = t.header.get(j).cloned().unwrap_or_default();
                lines.push(vec![Cell::Text(title), Cell::Text(val.clone())]);
            }
            if i + 1 < t.rows.len() {
                lines.push(vec![Cell::Spacer, Cell::Spacer]);
            }
        }
    } else {
        if !t.header.is_empty() {
            lines.push(t.header.iter().cloned().map(Cell::Text).collect());
        }
        lines.extend(
            rows.into_iter()
                .map(|r| r.into_iter().map(Cell::Text).collect()),
        );
    }
    let mut out = write_rows(&lines, "-", "  ");
    if !t.notes.is_empty() {
        out.push('\n');
        for n in &t.notes {
            out.push_str(n);
            out.push('\n');
        }
    }
    if !t.header.is_empty() && !t.content.trim().is_empty() {
        out.push_str(&format!("\n{} {}\n", t.rows.len(), t.content));
    }
    out
}

/// The reference writer: each cell split on newlines (an empty cell shows `empty`), columns
/// padded to their widest line in bytes, every cell followed by `border`.
fn write_rows(rows: &[Vec<Cell>], empty: &str, border: &str) -> String {
    // (lines of output, is_spacer)
    let mut out_rows: Vec<(Vec<String>, bool)> = Vec::new();
    let mut widths: Vec<usize> = Vec::new();
    for row in rows {
        let cols: Vec<(Vec<String>, bool)> = row
            .iter()
            .map(|c| match c {
                Cell::Spacer => (vec![empty.to_string()], true),
                Cell::Text(s) => {
                    let clean = s.replace('\r', "");
                    if clean.is_empty() {
                        (vec![empty.to_string()], false)
                    } else {
                        (clean.split('\n').map(str::to_string).collect(), false)
                    }
                }
            })
            .collect();
        for (i, (col_lines, _)) in cols.iter().enumerate() {
            if widths.len() <= i {
                widths.resize(i + 1, 0);
            }
            for l in col_lines {
                widths[i] = widths[i].max(l.len());
            }
        }
        let height = cols.iter().map(|(l, _)| l.len()).max().unwrap_or(1).max(1);
        for li in 0..height {
            let mut spacer = true;
            let mut cells = Vec::with_capacity(cols.len());
            for (col_lines, is_spacer) in &cols {
                match col_lines.get(li) {
                    Some(s) => {
                        if !is_spacer {
                            spacer = false;
                        }
                        cells.push(s.clone());
                    }
                    None => {
                        spacer = false;
                        cells.push(String::new());
                    }
                }
            }
            out_rows.push((cells, spacer));
        }
    }
    let mut out = String::new();
    for (cells, spacer) in out_rows {
        if spacer {
            out.push('\n');
            continue;
        }
        let last = cells.len().saturating_sub(1);
        for (i, cell) in cells.iter().enumerate() {
            out.push_str(cell);
            if i != last {
                let pad = widths
                    .get(i)
                    .copied()
                    .unwrap_or(0)
                    .saturating_sub(cell.len());
                out.extend(std::iter::repeat_n(' ', pad));
            }
            out.push_str(border);
        }
        out.push('\n');
    }
    out
}

/// The reference CLI's non-TTY rendering (stdout not a terminal, no `--tty`): rows only,
/// first column filled, cells separated by tabs. Not wired yet: `main` does not detect TTYs.
#[allow(dead_code)]
pub fn render_table_data_only(t: &Table, opts: &TableOptions) -> String {
    let rows = sorted_rows(t, &opts.sort_by, true);
    let lines: Vec<Vec<Cell>> = rows
        .into_iter()
        .map(|r| r.into_iter().map(Cell::Text).collect())
        .collect();
    write_rows(&lines, "-", "\t")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(header: &[&str], rows: &[&[&str]], content: &str) -> Table {
        Table {
            content: content.into(),
            header: header.iter().map(|s| s.to_string()).collect(),
            rows: rows
                .iter()
                .map(|r| r.iter().map(|s| s.to_string()).collect())
                .collect(),
            notes: vec![],
        }
    }

    #[test]
    fn columns_are_padded_and_every_cell_has_a_border() {
        let table = t(&["Job", "Digest"], &[&["a/1", "x"], &["bb/22", ""]], "jobs");
        assert_eq!(
            render_table(&table),
            "Job    Digest  \na/1    x  \nbb/22  -  \n\n2 jobs\n"
        );
    }

    #[test]
    fn multi_line_cells_sorting_and_tilde_dedup() {
        let table = t(
            &["Name", "Deps"],
            &[&["b", "x\ny"], &["a", ""], &["a", "z"]],
            "things",
        );
        let opts = TableOptions {
            sort_by: vec![(0, true)],
            ..Default::default()
        };
        assert_eq!(
            render_table_with(&table, &opts),
            "Name  Deps  \na     -  \n~     z  \nb     x  \n      y  \n\n3 things\n"
        );
    }

    #[test]
    fn transposed_tables_print_header_value_pairs_without_count() {
        let table = t(&["Name", "Commit Hash"], &[&["kv", "abc+"]], "");
        let opts = TableOptions {
            transpose: true,
            ..Default::default()
        };
        assert_eq!(
            render_table_with(&table, &opts),
            "Name         kv  \nCommit Hash  abc+  \n"
        );
    }

    #[test]
    fn header_keys_follow_the_reference_keyify() {
        assert_eq!(header_key("Commit Hash"), "commit_hash");
        assert_eq!(header_key("OS Version"), "os_version");
        assert_eq!(header_key(" VM  CID(s) "), "vm_cid_s");
        assert_eq!(header_key("--"), "_");
    }

    #[test]
    fn json_document_matches_go_shape() {
        let mut out = JsonOutput::default();
        let table = t(&["Name", "A&B"], &[&["b", "<x>"], &["a", "y"]], "things");
        let opts = TableOptions {
            sort_by: vec![(0, true)],
            ..Default::default()
        };
        out.tables = Some(vec![json_table(&table, &opts)]);
        out.lines = Some(vec!["Succeeded".into()]);
        let doc = json_document(&out);
        let expected = r#"{
    "Tables": [
        {
            "Content": "things",
            "Header": {
                "a_b": "A\u0026B",
                "name": "Name"
            },
            "Rows": [
                {
                    "a_b": "y",
                    "name": "a"
                },
                {
                    "a_b": "\u003cx\u003e",
                    "name": "b"
                }
            ],
            "Notes": null
        }
    ],
    "Blocks": null,
    "Lines": [
        "Succeeded"
    ]
}"#;
        assert_eq!(doc, expected);
    }

    #[test]
    fn merge_sort_is_stable() {
        let rows = vec![(1, 'a'), (0, 'b'), (1, 'c'), (0, 'd')];
        let sorted = merge_sort(rows, &|x: &(i32, char), y: &(i32, char)| x.0 < y.0);
        assert_eq!(sorted, vec![(0, 'b'), (0, 'd'), (1, 'a'), (1, 'c')]);
    }
}
